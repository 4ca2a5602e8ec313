import ArgumentParser
import Checkpoint
import Engine
import Foundation
import Images
import VitLensCore

extension ResizeMode: ExpressibleByArgument {}
extension RepresentationKind: ExpressibleByArgument {}

struct ModelOptions: ParsableArguments {
    @Option(help: "Number of attention heads (cannot be read from weights; default: metadata, config.json, else width/64).")
    var heads: Int?

    @Option(name: .customLong("image-size"), help: "Run at this image size; position embeddings are resampled (bicubic, as timm).")
    var imageSize: Int?

    @Option(help: "Threads for OpenBLAS and vitlens's own loops (default: all cores).")
    var threads: Int?

    func validate() throws {
        if let heads, heads < 1 { throw ValidationError("--heads must be at least 1") }
        if let imageSize, imageSize < 1 || imageSize > 4096 { throw ValidationError("--image-size must be between 1 and 4096") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func applyThreads() {
        if let threads {
            BLASRuntime.setThreads(threads)
            Workers.count = threads
        }
    }
}

struct ImageOptions: ParsableArguments {
    @Option(help: "Folder of PNG/JPEG images, searched recursively, sorted by relative path.")
    var images: String

    @Option(help: "Use the first N images.")
    var num: Int = 1024

    @OptionGroup var decoding: DecodeOptions

    var batch: Int { decoding.batch }
    var resize: ResizeMode { decoding.resize }
    var skipBadImages: Bool { decoding.skipBadImages }

    func validate() throws {
        if num < 1 { throw ValidationError("--num must be at least 1") }
    }
}

/// How images are batched and preprocessed: shared by the folder commands and `vitlens probe`.
struct DecodeOptions: ParsableArguments {
    @Option(help: "Images per forward batch.")
    var batch: Int = 64

    @Option(help: "timm-eval (shorter side to size/0.875, bicubic, centre crop) or none (images must be the model's size).")
    var resize: ResizeMode = .timmEval

    @Flag(name: .customLong("skip-bad-images"), help: "Warn about and skip unreadable images instead of failing.")
    var skipBadImages = false

    func validate() throws {
        if batch < 1 || batch > 4096 { throw ValidationError("--batch must be between 1 and 4096") }
    }
}

struct OutputOptions: ParsableArguments {
    @Option(help: "Report folder (default: reports/<command>-<model>).")
    var out: String?

    @Flag(help: "No progress line.")
    var quiet = false
}

/// A checkpoint loaded, its architecture resolved and its weights converted.
struct LoadedModel {
    let checkpoint: LoadedCheckpoint
    let config: ViTConfig
    let engine: ViTEngine
    var name: String { modelName(checkpoint.path) }

    /// Runs a batch and refuses to go on with NaN/inf activations (SPEC: never silently report
    /// numbers computed from them).
    @discardableResult
    func run(_ x: Tensor, taps: ForwardTaps?, batch index: Int) throws -> Tensor {
        let out = engine.forward(x, taps: taps)
        if let at = engine.nonFiniteAt { throw EngineError.nonFinite(model: checkpoint.path, at: at, batch: index) }
        return out
    }
}

func loadModel(_ path: String, heads: Int?, imageSize: Int?, quiet: Bool) throws -> LoadedModel {
    let ckpt = try CheckpointLoader.load(path: path)
    return try namingFile(path) {
        let config = try ViTConfig.infer(from: ckpt, heads: heads, imageSize: imageSize)
        if config.headsSource == .convention && !quiet {
            notice("\(path): head count not recorded; using \(config.heads) (width \(config.dim)/64, the DeiT/ViT convention). mae-lite's Tiny needs --heads 12.")
        }
        let weights = try ViTWeights(checkpoint: ckpt, config: config)
        return LoadedModel(checkpoint: ckpt, config: config, engine: ViTEngine(weights: weights))
    }
}

/// Runs `body`, prefixing the checkpoint's path to tensor-level errors ("missing tensor …",
/// "blocks.0…: expected …") that do not name the file, so the message says which model.
func namingFile<T>(_ path: String, _ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as CheckpointError {
        let text = "\(e)"
        if text.hasPrefix(path) || text.hasPrefix("--") { throw e }
        throw CheckpointError.config(path: path, what: text)
    }
}

/// A short name for report folders: the file name without checkpoint extensions.
func modelName(_ path: String) -> String {
    var name = (path as NSString).lastPathComponent
    for ext in [".safetensors", ".pth.tar", ".pth", ".bin", ".pt", ".ckpt"] where name.hasSuffix(ext) {
        name.removeLast(ext.count)
        break
    }
    return name.isEmpty ? "model" : name
}

func notice(_ s: String) { FileHandle.standardError.write(Data(("notice: " + s + "\n").utf8)) }
func warning(_ s: String) { FileHandle.standardError.write(Data(("warning: " + s + "\n").utf8)) }

/// Figure options of the analysing commands (and `vitlens plot`).
struct FigureOptions: ParsableArguments {
    @Option(help: "Scale of the PNG figures (1 = 820 px wide; 2 or 3 for print).")
    var scale: Double = 1

    func validate() throws {
        if !(scale >= 0.25 && scale <= 8) { throw ValidationError("--scale must be between 0.25 and 8") }
    }
}

/// --vmin/--vmax of CKA heatmaps.
struct ColorRangeOptions: ParsableArguments {
    @Option(help: "Value drawn as the darkest colour of the heatmap (default 0).")
    var vmin: Double?
    @Option(help: "Value drawn as the brightest colour of the heatmap (default 1).")
    var vmax: Double?

    func validate() throws {
        for (n, v) in [("--vmin", vmin), ("--vmax", vmax)] { if let v, !v.isFinite { throw ValidationError("\(n) must be a finite number") } }
        if (vmax ?? 1) <= (vmin ?? 0) { throw ValidationError("--vmax must be greater than --vmin (defaults 0 and 1)") }
    }
}
