import Foundation

/// One message of a conversation.
public struct ChatMessage: Sendable, Codable, Equatable {
    public var role: String  // "system", "user" or "assistant"
    public var content: String
    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// Chat prompt formats. Squish recognizes the common templates by their markers instead of running Jinja, and
/// renders each as its published Jinja template does (the tests compare with Jinja2 on the real template texts):
/// ChatML (`<|im_start|>`: SmolLM2, Qwen2/Qwen2.5), Qwen3 (ChatML with `<think>` blocks), Llama 3
/// (`<|start_header_id|>`), Gemma 3 (`<start_of_turn>`), and a plain fallback.
public enum ChatTemplate: Sendable, Equatable {
    /// ChatML; `defaultSystem` is inserted when the conversation does not start with a system message
    /// (SmolLM2's and Qwen2.5's templates do this).
    case chatML(defaultSystem: String?)
    /// Qwen3's ChatML: no default system prompt; an assistant message's `<think>…</think>` reasoning is kept only
    /// after the last user message (earlier turns lose it); with thinking turned off, the generation prompt ends
    /// with an empty think block.
    case qwen3
    case llama3
    /// Gemma 3: BOS text, then `<start_of_turn>user` / `<start_of_turn>model` turns each closed by
    /// `<end_of_turn>\n`; a leading system message has no turn of its own: its text and a blank line open the first
    /// turn; contents are trimmed.
    case gemma3
    /// "Role: content" lines, for models without a known template.
    case plain

    /// Picks the template matching a model's `tokenizer.chat_template` (nil or unknown: plain).
    public init(jinja: String?) {
        guard let j = jinja else { self = .plain; return }
        if j.contains("<start_of_turn>") {
            self = .gemma3
        } else if j.contains("<|im_start|>") {
            self = j.contains("</think>") ? .qwen3 : .chatML(defaultSystem: Self.defaultSystemPrompt(in: j))
        } else if j.contains("<|start_header_id|>") {
            self = .llama3
        } else {
            self = .plain
        }
    }

    /// The template for a model: from its Jinja `chat_template` when it has a known one, else from its
    /// architecture (GGUF `general.architecture` or Hugging Face `model_type`) and vocabulary, for files that carry
    /// no template (Gemma-3-270M's GGUF has none): `<start_of_turn>` and `<end_of_turn>` tokens → Gemma 3,
    /// `<|im_start|>` → Qwen3 for a `qwen3` architecture, else ChatML with Qwen's default system prompt for
    /// `qwen2`, else plain ChatML; `<|start_header_id|>` → Llama 3.
    public init(jinja: String?, architecture: String?, tokenizer: Tokenizer) {
        let known = ChatTemplate(jinja: jinja)
        if known != .plain {
            self = known
        } else if tokenizer.id(of: "<start_of_turn>") != nil && tokenizer.id(of: "<end_of_turn>") != nil {
            self = .gemma3
        } else if tokenizer.id(of: "<|im_start|>") != nil && tokenizer.id(of: "<|im_end|>") != nil {
            switch architecture {
            case "qwen3": self = .qwen3
            case "qwen2": self = .chatML(defaultSystem: Self.qwen2DefaultSystem)
            default: self = .chatML(defaultSystem: nil)
            }
        } else if tokenizer.id(of: "<|start_header_id|>") != nil && tokenizer.id(of: "<|eot_id|>") != nil {
            self = .llama3
        } else {
            self = .plain
        }
    }

    /// Qwen2.5-Instruct's default system prompt (its template's own text).
    public static let qwen2DefaultSystem = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

    /// A literal default system prompt in a ChatML template: the text of a Jinja string literal between
    /// `<|im_start|>system` + newline and `<|im_end|>` with no expression in it (SmolLM2's template writes the
    /// newline as itself, Qwen2.5's as `\n`).
    static func defaultSystemPrompt(in jinja: String) -> String? {
        var rest = jinja[...]
        while let open = rest.range(of: "<|im_start|>system") {
            rest = rest[open.upperBound...]
            let body: Substring
            if rest.hasPrefix("\n") {
                body = rest.dropFirst()
            } else if rest.hasPrefix("\\n") {
                body = rest.dropFirst(2)
            } else {
                continue
            }
            guard let close = body.range(of: "<|im_end|>") else { break }
            let text = body[..<close.lowerBound]
            if !text.isEmpty, !text.contains(where: { "'\"{}+".contains($0) }) { return unescapeJinja(String(text)) }
        }
        return nil
    }

    /// Jinja string-literal escapes (\n, \t, \\, \', \").
    static func unescapeJinja(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out = ""
        var escaped = false
        for c in s {
            if escaped {
                switch c {
                case "n": out.append("\n")
                case "t": out.append("\t")
                default: out.append(c)
                }
                escaped = false
            } else if c == "\\" {
                escaped = true
            } else {
                out.append(c)
            }
        }
        return out
    }

    /// The prompt text for `messages`; with `addGenerationPrompt` it ends where the assistant's reply begins.
    /// `enableThinking` false makes Qwen3's generation prompt close an empty think block (its template's
    /// `enable_thinking=False`); the other templates ignore it.
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool = true, enableThinking: Bool = true) -> String {
        var out = ""
        switch self {
        case .chatML(let system):
            if let system, messages.first?.role != "system" {
                out += "<|im_start|>system\n\(system)<|im_end|>\n"
            }
            for m in messages { out += "<|im_start|>\(m.role)\n\(m.content)<|im_end|>\n" }
            if addGenerationPrompt { out += "<|im_start|>assistant\n" }
        case .qwen3:
            out = renderQwen3(messages, addGenerationPrompt: addGenerationPrompt, enableThinking: enableThinking)
        case .llama3:
            out += "<|begin_of_text|>"
            // Meta's template trims each message (Jinja's `trim`).
            for m in messages {
                out += "<|start_header_id|>\(m.role)<|end_header_id|>\n\n" + Self.trim(m.content) + "<|eot_id|>"
            }
            if addGenerationPrompt { out += "<|start_header_id|>assistant<|end_header_id|>\n\n" }
        case .gemma3:
            out += "<bos>"
            var turns = messages[...]
            var firstPrefix = ""
            if let first = messages.first, first.role == "system" {
                firstPrefix = first.content + "\n\n"
                turns = messages.dropFirst()
            }
            for (k, m) in turns.enumerated() {
                let role = m.role == "assistant" ? "model" : m.role
                out += "<start_of_turn>\(role)\n" + (k == 0 ? firstPrefix : "") + Self.trim(m.content) + "<end_of_turn>\n"
            }
            if addGenerationPrompt { out += "<start_of_turn>model\n" }
        case .plain:
            for m in messages { out += "\(m.role.prefix(1).uppercased() + m.role.dropFirst()): \(m.content)\n" }
            if addGenerationPrompt { out += "Assistant:" }
        }
        return out
    }

    /// Qwen3-0.6B's template without tools: the first system message, then user and system turns as ChatML;
    /// an assistant turn splits its content at `</think>` into reasoning and answer and shows the reasoning
    /// (`<think>\n…\n</think>\n\n`) only when it comes after the last user message and is the last message or has
    /// reasoning.
    private func renderQwen3(_ messages: [ChatMessage], addGenerationPrompt: Bool, enableThinking: Bool) -> String {
        var out = ""
        if let first = messages.first, first.role == "system" {
            out += "<|im_start|>system\n\(first.content)<|im_end|>\n"
        }
        // The last user message that is not a tool response (Squish has no tool messages).
        let lastQuery = messages.lastIndex { $0.role == "user" && !($0.content.hasPrefix("<tool_response>") && $0.content.hasSuffix("</tool_response>")) }
            ?? messages.count - 1
        for (k, m) in messages.enumerated() {
            if m.role == "user" || (m.role == "system" && k > 0) {
                out += "<|im_start|>\(m.role)\n\(m.content)<|im_end|>\n"
            } else if m.role == "assistant" {
                var content = m.content[...]
                var reasoning: Substring = ""
                if let close = m.content.range(of: "</think>") {
                    content = Self.stripLeading(m.content[m.content.ranges(of: "</think>").last!.upperBound...], "\n")
                    let before = Self.stripTrailing(m.content[..<close.lowerBound], "\n")
                    let open = before.ranges(of: "<think>").last
                    reasoning = Self.stripLeading(open.map { before[$0.upperBound...] } ?? before, "\n")
                }
                if k > lastQuery && (k == messages.count - 1 || !reasoning.isEmpty) {
                    out += "<|im_start|>assistant\n<think>\n" + Self.stripTrailing(Self.stripLeading(reasoning, "\n"), "\n")
                        + "\n</think>\n\n" + Self.stripLeading(content, "\n")
                } else {
                    out += "<|im_start|>assistant\n" + content
                }
                out += "<|im_end|>\n"
            }
        }
        if addGenerationPrompt {
            out += "<|im_start|>assistant\n"
            if !enableThinking { out += "<think>\n\n</think>\n\n" }
        }
        return out
    }

    /// Jinja's `trim` (Python's `str.strip()`: whitespace at both ends).
    static func trim(_ s: String) -> String { s.trimmingCharacters(in: .whitespacesAndNewlines) }

    static func stripLeading(_ s: Substring, _ c: Character) -> Substring { s.drop { $0 == c } }

    static func stripTrailing(_ s: Substring, _ c: Character) -> Substring {
        var end = s.endIndex
        while end > s.startIndex, s[s.index(before: end)] == c { end = s.index(before: end) }
        return s[..<end]
    }

    /// Text markers that end an assistant turn (their token ids stop generation, with the model's EOS).
    public var endOfTurnTokens: [String] {
        switch self {
        case .chatML, .qwen3: return ["<|im_end|>"]
        case .llama3: return ["<|eot_id|>"]
        case .gemma3: return ["<end_of_turn>"]
        case .plain: return []
        }
    }
}
