/// One message of a conversation.
public struct ChatMessage: Sendable, Codable, Equatable {
    public var role: String  // "system", "user" or "assistant"
    public var content: String
    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// Chat prompt formats. Squish recognizes the common templates by their markers instead of running Jinja:
/// ChatML (`<|im_start|>`, SmolLM2 and Qwen2), Llama 3 (`<|start_header_id|>`), and a plain fallback.
public enum ChatTemplate: Sendable, Equatable {
    /// ChatML; `defaultSystem` is inserted when the conversation does not start with a system message
    /// (SmolLM2's template does this).
    case chatML(defaultSystem: String?)
    case llama3
    /// "Role: content" lines, for models without a known template.
    case plain

    /// Picks the template matching a model's `tokenizer.chat_template` (nil or unknown: plain).
    public init(jinja: String?) {
        guard let j = jinja else { self = .plain; return }
        if j.contains("<|im_start|>") {
            // SmolLM2-style templates state their default system prompt literally.
            var system: String?
            if let start = j.range(of: "<|im_start|>system\n"), j.contains("!= 'system'") || j.contains("!= \"system\"") {
                let rest = j[start.upperBound...]
                if let end = rest.range(of: "<|im_end|>") { system = String(rest[..<end.lowerBound]) }
            }
            self = .chatML(defaultSystem: system)
        } else if j.contains("<|start_header_id|>") {
            self = .llama3
        } else {
            self = .plain
        }
    }

    /// The prompt text for `messages`; with `addGenerationPrompt` it ends where the assistant's reply begins.
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool = true) -> String {
        var out = ""
        switch self {
        case .chatML(let system):
            if let system, messages.first?.role != "system" {
                out += "<|im_start|>system\n\(system)<|im_end|>\n"
            }
            for m in messages { out += "<|im_start|>\(m.role)\n\(m.content)<|im_end|>\n" }
            if addGenerationPrompt { out += "<|im_start|>assistant\n" }
        case .llama3:
            out += "<|begin_of_text|>"
            for m in messages { out += "<|start_header_id|>\(m.role)<|end_header_id|>\n\n\(m.content)<|eot_id|>" }
            if addGenerationPrompt { out += "<|start_header_id|>assistant<|end_header_id|>\n\n" }
        case .plain:
            for m in messages { out += "\(m.role.prefix(1).uppercased() + m.role.dropFirst()): \(m.content)\n" }
            if addGenerationPrompt { out += "Assistant:" }
        }
        return out
    }

    /// Text markers that end an assistant turn (their token ids stop generation).
    public var endOfTurnTokens: [String] {
        switch self {
        case .chatML: return ["<|im_end|>"]
        case .llama3: return ["<|eot_id|>"]
        case .plain: return []
        }
    }
}
