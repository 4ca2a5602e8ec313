/// Everything that can go wrong reading a checkpoint; each case names the file, entry or tensor.
public indirect enum CheckpointError: Error, CustomStringConvertible, Equatable {
    case unknownFormat(path: String)
    case truncated(path: String, what: String)
    case malformed(path: String, what: String)
    case unsupported(path: String, what: String)
    case pickleGlobalRefused(path: String, name: String)
    case pickleRefused(path: String, what: String)
    case tensorOutOfRange(path: String, tensor: String, what: String)
    case unknownDType(path: String, tensor: String, dtype: String)
    case notAViT(path: String, what: String)
    case missingTensor(String)
    case badShape(tensor: String, expected: [Int], got: [Int])
    case nonFinite(tensor: String, index: Int, value: Float)
    case config(path: String, what: String)
    case cannotWrite(path: String, reason: String)
    /// A tensor-level error (a missing, mis-shaped or non-finite tensor) in the file `path`.
    case inFile(path: String, CheckpointError)

    public var description: String {
        switch self {
        case let .unknownFormat(path):
            return "\(path): not a checkpoint vitlens can read (expected safetensors, a torch.save zip archive, or "
                + "a Hugging Face model folder)"
        case let .truncated(path, what): return "\(path): truncated: \(what)"
        case let .malformed(path, what): return "\(path): malformed: \(what)"
        case let .unsupported(path, what): return "\(path): unsupported: \(what)"
        case let .pickleGlobalRefused(path, name):
            return "\(path): pickle global '\(name)' is not allowed (only tensors, containers and plain values are "
                + "loaded; nothing is executed)"
        case let .pickleRefused(path, what): return "\(path): pickle refused: \(what)"
        case let .tensorOutOfRange(path, tensor, what): return "\(path): tensor \(tensor): \(what)"
        case let .unknownDType(path, tensor, dtype): return "\(path): tensor \(tensor): unknown dtype \(dtype)"
        case let .notAViT(path, what): return "\(path): not a ViT checkpoint: \(what)"
        case let .missingTensor(name): return "missing tensor \(name)"
        case let .badShape(tensor, expected, got):
            return "\(tensor): expected \(shapeString(expected)), got \(shapeString(got))"
        case let .nonFinite(tensor, index, value): return "\(tensor): non-finite weight \(value) at element \(index)"
        case let .config(path, what): return "\(path): \(what)"
        case let .cannotWrite(path, reason): return "\(path): cannot write (\(reason))"
        case let .inFile(path, e): return "\(path): \(e)"
        }
    }
}

func shapeString(_ s: [Int]) -> String { "[" + s.map(String.init).joined(separator: ", ") + "]" }

extension CheckpointError {
    /// Runs `body`, naming the checkpoint `path` in tensor-level errors, which know the tensor
    /// but not the file, so that a message says which model of several is at fault.
    public static func naming<T>(_ path: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as CheckpointError {
            switch e {
            case .missingTensor, .badShape, .nonFinite: throw CheckpointError.inFile(path: path, e)
            default: throw e
            }
        }
    }
}
