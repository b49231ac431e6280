import SquishCore
/// Errors from reading or writing model files (GGUF, safetensors, config.json) and from block codecs.
/// Every case names the file (or "<memory>") and, where it applies, the tensor and byte offset.
public enum FormatError: Error, CustomStringConvertible, Equatable {
    /// The file ends before a structure that must be there.
    case truncated(path: String, offset: Int, needed: String)
    /// The magic bytes do not identify the expected format.
    case badMagic(path: String, found: String)
    case unsupportedVersion(path: String, version: UInt32)
    /// A count, length, offset or size read from the file is impossible for a file of this size.
    case implausible(path: String, offset: Int, what: String, value: String)
    /// Metadata, header or structure is present but wrong.
    case invalid(path: String, offset: Int?, reason: String)
    case unknownTensorType(path: String, tensor: String, typeID: UInt32)
    /// `offset`: the data's absolute position (a u64 from the file can exceed Int.max; it is shown as it is).
    case tensorOutOfBounds(path: String, tensor: String, offset: UInt64, byteCount: Int, fileSize: Int)
    case misalignedTensor(path: String, tensor: String, offset: Int, alignment: Int)
    case overlappingTensors(path: String, first: String, second: String)
    case shapeMismatch(path: String, tensor: String, expected: String, found: String)
    case duplicateName(path: String, name: String)
    case missing(path: String, what: String)
    /// A codec was asked for a type it does not implement, or for sizes that are not whole blocks.
    case unsupportedType(GGMLType, operation: String)
    case sizeMismatch(type: GGMLType, elements: Int, bytes: Int, reason: String)

    /// The message with non-printing characters escaped (names and values in it may come from a hostile file).
    public var description: String { TerminalText.escape(message) }

    /// The message as composed, before escaping.
    var message: String {
        switch self {
        case .truncated(let path, let offset, let needed):
            return "\(path): file truncated at byte \(offset): expected \(needed)"
        case .badMagic(let path, let found):
            return "\(path): not a recognized model file (magic \(found))"
        case .unsupportedVersion(let path, let version):
            return "\(path): unsupported GGUF version \(version) (supported: 2, 3)"
        case .implausible(let path, let offset, let what, let value):
            return "\(path): at byte \(offset): implausible \(what) \(value) for this file"
        case .invalid(let path, let offset, let reason):
            return offset.map { "\(path): at byte \($0): \(reason)" } ?? "\(path): \(reason)"
        case .unknownTensorType(let path, let tensor, let typeID):
            return "\(path): tensor '\(tensor)' has unknown type id \(typeID)"
        case .tensorOutOfBounds(let path, let tensor, let offset, let byteCount, let fileSize):
            return "\(path): tensor '\(tensor)' data [\(offset), +\(byteCount)) lies outside the file (\(fileSize) bytes)"
        case .misalignedTensor(let path, let tensor, let offset, let alignment):
            return "\(path): tensor '\(tensor)' offset \(offset) is not a multiple of the alignment \(alignment)"
        case .overlappingTensors(let path, let first, let second):
            return "\(path): tensors '\(first)' and '\(second)' overlap"
        case .shapeMismatch(let path, let tensor, let expected, let found):
            return "\(path): tensor '\(tensor)': expected \(expected), found \(found)"
        case .duplicateName(let path, let name):
            return "\(path): duplicate name '\(name)'"
        case .missing(let path, let what):
            return "\(path): missing \(what)"
        case .unsupportedType(let type, let operation):
            return "\(type.name): \(operation) is not supported for this type"
        case .sizeMismatch(let type, let elements, let bytes, let reason):
            return "\(type.name): \(elements) elements / \(bytes) bytes: \(reason)"
        }
    }
}
