import Checkpoint
import Engine
import Families
import Foundation
import Train
import VitLensCore

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
    /// The family, where the tensors cannot tell it (`--family`).
    public var family: ModelFamily?

    public init(path: String, heads: Int? = nil, headsGivenAs: String = "--heads", imageSize: Int? = nil,
                name: String? = nil, precision: Precision = .f32, family: ModelFamily? = nil) {
        self.family = family
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
        let ckpt = try CheckpointLoader.loadModel(path: request.path)
        checkpoint = ckpt
        let path = request.path
        let config = try CheckpointError.naming(path) {
            try ViTConfig.infer(
                from: ckpt, heads: request.heads, imageSize: request.imageSize, family: request.family) }
        self.config = config
        let weights = try CheckpointError.naming(path) { try ViTWeights(checkpoint: ckpt, config: config) }
        engine = try ViTEngine(weights: weights, precision: request.precision)
        name = request.name ?? modelName(path)
    }

    /// Runs a batch and refuses to go on with NaN/inf activations (never report numbers
    /// computed from them).  x: (B, 3, S, S) → (B, T, C).
    @discardableResult
    public func run(_ x: Tensor, taps: ForwardTaps?, batch index: Int) throws -> Tensor {
        do {
            return try engine.forward(x, taps: taps)
        } catch ForwardFailure.nonFinite(let at) {
            throw EngineError.nonFinite(model: checkpoint.path, at: at, batch: index)
        } catch ForwardFailure.bf16MatmulFailed {
            throw EngineError.precision("\(checkpoint.path): oneDNN's bf16 matmul failed on batch \(index)")
        }
    }

    /// The head count the checkpoint itself records (safetensors metadata or config.json), and
    /// where, whatever the run uses.
    public var statedHeads: (heads: Int, source: String)? {
        if let m = checkpoint.metadata["num_heads"],
            let v = Int(m) { return (v, ViTConfig.HeadsSource.metadata.rawValue) }
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
    public var record: ModelRecord {
        ModelRecord(name: name, path: checkpoint.path, sha256: sha256, format: checkpoint.format,
                    layout: checkpoint.layout.rawValue, stateDict: checkpoint.location, architecture: architecture)
    }

    public var architecture: ArchitectureRecord {
        let c = config
        let bias = c.relativeBlockTables && c.relativeSharedTable ? "per block and shared"
            : c.relativeBlockTables ? "per block" : c.relativeSharedTable ? "shared" : "none"
        let precision = engine.precision == .bf16
            ? "bf16: linear layers with bfloat16 weights and inputs, attention products with bfloat16 operands, "
                + "float32 accumulation (oneDNN \(Precision.bf16Implementation)); the rest float32"
            : "f32"
        var record = ArchitectureRecord(
            family: c.family, familySource: c.familySource, embedDim: c.dim, depth: c.depth, heads: c.heads,
                headsSource: headsSource,
                patchSize: c.patch,
            checkpointImageSize: c.checkpointImageSize, imageSize: c.imageSize, tokens: c.tokens,
            prefixTokens: c.prefixTokens, registerTokens: c.registers, prefixPositionRows: c.positionSlots,
            layerScale: c.layerScale, preNorm: c.preNorm, activation: c.activation.rawValue,
            activationSource: c.activationSource, classToken: c.classToken, absolutePositions: c.absolutePositions,
            relativePositionBias: bias, mlpHidden: c.mlpHidden, qkvBias: c.qkvBias, finalNorm: c.finalNorm.rawValue,
            // At its float32 value's shortest form (1e-06, not 9.999999974752427e-07).
            layerNormEps: Double("\(c.eps)") ?? Double(c.eps), parameters: c.parameterCount, precision: precision)
        (record.norm, record.mlp, record.rotary) = (c.norm.rawValue, c.mlpSummary, c.rotary?.summary ?? "none")
        return record
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
