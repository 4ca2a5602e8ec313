import Checkpoint
import Crypto
import Engine
import Foundation
import Train
import VitLensCore

public let vitlensVersion = "0.1.0"

/// What the application layer can refuse: models that cannot be compared in one run, reports
/// that cannot be read or merged. Each case names the files and numbers involved.
public enum LensError: Error, CustomStringConvertible {
    /// Two models that must run at one image size do not.
    case differentImageSizes(a: String, sizeA: Int, b: String, sizeB: Int)
    /// Patch-token CKA of two models with different token grids.
    case differentGrids(a: String, gridA: Int, b: String, gridB: Int)
    case report(String)
    case merge(String)
    case data(String)
    /// A 4-D feature array given without the number of its prefix (class/register) tokens.
    case prefixTokensNeeded(path: String)
    /// Attention probabilities whose patch size is unknown, for distances in pixels.
    case patchSizeNeeded(path: String)
    /// A class-token selection (`option`) on a model without a class token (SigLIP-style).
    case noClassToken(path: String, option: String)

    public var description: String {
        switch self {
        case let .differentImageSizes(a, sa, b, sb): return "\(a) runs at \(sa)px but \(b) at \(sb)px; both must run at one image size"
        case let .differentGrids(a, ga, b, gb):
            return "patch tokens can only be compared on one token grid: \(a) has \(ga)x\(ga) patches, \(b) \(gb)x\(gb)"
        case let .report(s), let .merge(s), let .data(s): return s
        case let .prefixTokensNeeded(path): return "\(path): an array of tokens needs the number of its prefix (class/register) tokens"
        case let .noClassToken(path, option): return "\(path) has no class token, so \(option) has nothing to take; use mean or patches"
        case let .patchSizeNeeded(path): return "\(path): distances in pixels need the patch size of the model the attention came from"
        }
    }
}

/// How a model is asked for: its file, and what the user said about it.
public struct ModelRequest {
    public var path: String
    public var heads: Int?
    /// How `heads` was given (recorded in the report, e.g. "--heads-b").
    public var headsGivenAs: String
    public var imageSize: Int?
    /// The display name (default: the file name without its extensions).
    public var name: String?
    /// The arithmetic of the engine's linear layers.
    public var precision: Precision

    public init(path: String, heads: Int? = nil, headsGivenAs: String = "--heads", imageSize: Int? = nil, name: String? = nil,
                precision: Precision = .f32) {
        self.path = path
        self.heads = heads
        self.headsGivenAs = headsGivenAs
        self.imageSize = imageSize
        self.name = name
        self.precision = precision
    }
}

/// A checkpoint loaded for analysis: its architecture resolved, its weights converted, an
/// engine ready to run.
public final class AnalysisModel {
    public let checkpoint: LoadedCheckpoint
    public let config: ViTConfig
    public let engine: ViTEngine
    public let request: ModelRequest
    /// The name in report folders, titles, legends and tables: given, or the file name without
    /// its extensions.
    public let name: String

    public init(_ request: ModelRequest) throws {
        self.request = request
        let ckpt = try CheckpointLoader.load(path: request.path)
        checkpoint = ckpt
        let path = request.path
        let config = try CheckpointError.naming(path) { try ViTConfig.infer(from: ckpt, heads: request.heads, imageSize: request.imageSize) }
        self.config = config
        let weights = try CheckpointError.naming(path) { try ViTWeights(checkpoint: ckpt, config: config) }
        engine = try ViTEngine(weights: weights, precision: request.precision)
        name = request.name ?? modelName(path)
    }

    /// Runs a batch and refuses to go on with NaN/inf activations (never report numbers
    /// computed from them).  x: (B, 3, S, S) → (B, T, C).
    @discardableResult
    public func run(_ x: Tensor, taps: ForwardTaps?, batch index: Int) throws -> Tensor {
        let out = engine.forward(x, taps: taps)
        if engine.failed { throw EngineError.precision("\(checkpoint.path): oneDNN's bf16 matmul failed on batch \(index)") }
        if let at = engine.nonFiniteAt { throw EngineError.nonFinite(model: checkpoint.path, at: at, batch: index) }
        return out
    }

    /// The head count the checkpoint itself records (safetensors metadata or config.json), and
    /// where, whatever the run uses.
    public var statedHeads: (heads: Int, source: String)? {
        if let m = checkpoint.metadata["num_heads"], let v = Int(m) { return (v, ViTConfig.HeadsSource.metadata.rawValue) }
        if let v = checkpoint.config?.heads { return (v, ViTConfig.HeadsSource.config.rawValue) }
        return nil
    }

    /// SHA-256 of the weights file (computed once; it reads the whole file).
    public private(set) lazy var sha256: String = Digest.sha256(checkpoint.fileBytes)

    /// Where the head count came from, as recorded in reports.
    public var headsSource: String {
        config.headsSource == .option ? request.headsGivenAs : config.headsSource.rawValue
    }

    /// The model as recorded in every report: file, hash, layout, architecture.
    public var json: JSONValue {
        .object([
            ("name", .string(name)), ("path", .string(checkpoint.path)), ("sha256", .string(sha256)),
            ("format", .string(checkpoint.format)), ("layout", .string(checkpoint.layout.rawValue)),
            ("state_dict", .string(checkpoint.location)), ("architecture", architecture),
        ])
    }

    public var architecture: JSONValue {
        let c = config
        return .object([
            ("family", .string(c.family)),
            ("embed_dim", .int(c.dim)), ("depth", .int(c.depth)), ("heads", .int(c.heads)),
            ("heads_source", .string(headsSource)), ("patch_size", .int(c.patch)),
            ("checkpoint_image_size", .int(c.checkpointImageSize)), ("image_size", .int(c.imageSize)),
            ("tokens", .int(c.tokens)), ("prefix_tokens", .int(c.prefixTokens)), ("register_tokens", .int(c.registers)),
            ("prefix_position_rows", .int(c.positionSlots)), ("layer_scale", .bool(c.layerScale)), ("pre_norm", .bool(c.preNorm)),
            ("activation", .string(c.activation.rawValue)), ("activation_source", .string(c.activationSource)),
            ("class_token", .bool(c.classToken)), ("absolute_positions", .bool(c.absolutePositions)),
            ("relative_position_bias", .string(c.relativeBlockTables && c.relativeSharedTable ? "per block and shared"
                : c.relativeBlockTables ? "per block" : c.relativeSharedTable ? "shared" : "none")),
            ("mlp_hidden", .int(c.mlpHidden)),
            ("qkv_bias", .bool(c.qkvBias)), ("final_norm", .string(c.finalNorm.rawValue)),
            // At its float32 value's shortest form (1e-06, not 9.999999974752427e-07).
            ("layer_norm_eps", .double(Double("\(c.eps)") ?? Double(c.eps))), ("parameters", .int(c.parameterCount)),
            ("precision", .string(engine.precision == .bf16
                ? "bf16: linear layers with bfloat16 weights and inputs, attention products with bfloat16 operands, float32 accumulation (oneDNN \(Precision.bf16Implementation)); the rest float32"
                : "f32")),
        ])
    }
}

/// A short name for report folders: the file name without checkpoint extensions.
public func modelName(_ path: String) -> String {
    var p = path
    while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
    var name = (p as NSString).lastPathComponent
    for ext in [".safetensors", ".pth.tar", ".pth", ".bin", ".pt", ".ckpt"] where name.hasSuffix(ext) {
        name.removeLast(ext.count)
        break
    }
    return name.isEmpty ? "model" : name
}

/// SHA-256 through swift-crypto (BoringSSL's assembly, SHA extensions where the CPU has them).
public enum Digest {
    /// SHA-256 of mapped bytes, 1 MiB at a time, each chunk's pages released after it is
    /// hashed: hashing a multi-GB checkpoint or feature file does not leave it resident.
    public static func sha256(_ bytes: UnsafeRawBufferPointer) -> String {
        var h = SHA256()
        let chunk = 1 << 20
        var offset = 0
        while offset < bytes.count {
            let n = min(chunk, bytes.count - offset)
            h.update(bufferPointer: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)]))
            release(bytes, offset..<(offset + n))
            offset += n
        }
        return h.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// Tells the kernel the whole pages inside `range` of a read-only mapping are not needed
    /// now (they are read from the file again if they are).
    static func release(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) {
        guard let base = bytes.baseAddress else { return }
        let page = Int(getpagesize())
        let start = (Int(bitPattern: base) + range.lowerBound + page - 1) / page * page
        let end = (Int(bitPattern: base) + range.upperBound) / page * page
        if end > start { _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_DONTNEED) }
    }
    public static func sha256(_ text: String) -> String {
        SHA256.hash(data: Array(text.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}

/// The image list of a run, or for long lists its SHA-256 (of the newline-joined paths) and count.
public func imagesJSON(_ paths: [String], folder: String) -> JSONValue {
    var fields: [(String, JSONValue)] = [("folder", .string(folder)), ("count", .int(paths.count)),
                                         ("paths_sha256", .string(Digest.sha256(paths.joined(separator: "\n"))))]
    if paths.count <= 4096 { fields.append(("paths", .array(paths.map { .string($0) }))) }
    return .object(fields)
}

/// What a run says while it works: notices, warnings, progress. The CLI prints them; tests and
/// library users may collect or ignore them.
public protocol RunObserver: AnyObject {
    func notice(_ text: String)
    func warning(_ text: String)
    /// `done` of `total` images of the phase `label`.
    func progress(_ label: String, done: Int, total: Int)
    /// The phase whose progress was being shown has ended.
    func progressEnded()
}

/// An observer that keeps what it is told (for tests and for callers that print later).
public final class CollectingObserver: RunObserver {
    public private(set) var notices: [String] = [], warnings: [String] = []
    public init() {}
    public func notice(_ text: String) { notices.append(text) }
    public func warning(_ text: String) { warnings.append(text) }
    public func progress(_ label: String, done: Int, total: Int) {}
    public func progressEnded() {}
}

/// The metadata every report records about how it was made.
public struct RunContext {
    public var commandLine: String
    public var observer: RunObserver
    public init(commandLine: String, observer: RunObserver) {
        self.commandLine = commandLine
        self.observer = observer
    }
    /// The report's header fields.
    var header: [(String, JSONValue)] {
        [("vitlens_version", .string(vitlensVersion)), ("command_line", .string(commandLine))]
    }
}
