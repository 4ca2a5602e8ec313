import Engine
import Foundation
import Images
import VitLensCore

/// Every layer's representations and attention probabilities of a model over the images,
/// streamed into features.npy and attention.npy batch by batch.
public struct ExtractRun {
    public let model: AnalysisModel
    public let images: ImageBatches
    public let folder: String
    public var rep: RepresentationKind
    /// Representation indices written (0…L; nil: all), attention or not, which tokens, float16.
    public var layers: [Int]?
    public var attention = true
    public var tokens: ExtractTokens = .all
    public var half = false

    public init(model: AnalysisModel, images: ImageBatches, folder: String, rep: RepresentationKind) {
        (self.model, self.images, self.folder, self.rep) = (model, images, folder, rep)
    }

    /// Bytes the files will take for `n` images.
    public func bytes(images n: Int) -> Int {
        let c = model.config, e = half ? 2 : 4
        let reps = (layers ?? Array(0...c.depth)).count
        let rows = ExtractTaps.rows(tokens, T: c.tokens, prefix: c.prefixTokens)
        return e * reps * n * rows * c.dim + (attention ? e * c.depth * n * c.heads * c.tokens * c.tokens : 0)
    }

    /// Refuses what this model cannot give (the class token of a model without one).
    public func validate() throws {
        if tokens == .cls
            && !model.config.classToken {
            throw LensError.noClassToken(path: model.request.path, option: "--tokens cls") }
    }

    /// Writes the files into `out` (staged; the caller commits). Returns the file names and N.
    public func run(into out: OutputDirectory, _ context: RunContext) throws -> (files: [String], images: Int) {
        let c = model.config
        try validate()
        // N must be known before the first forward pass (it is in the .npy headers): with
        // skipping, the unreadable images are found first.
        let loader = images.skipBad ? images.subset(try images.readable()) : images
        let N = loader.items.count, T = c.tokens, C = c.dim, L = c.depth, H = c.heads
        let reps = layers ?? Array(0...L)
        if let bad = reps.first(where: { $0 < 0 || $0 > L }) {
            throw LensError.noSuchRepresentation(path: model.request.path, depth: L, index: bad) }
        let size = bytes(images: N)
        context.observer.notice(
            size >= 1_000_000_000 ? String(format: "writing %.2f GB for %d images", Double(size) / 1e9, N)
                                : String(format: "writing %.1f MB for %d images", Double(size) / 1e6, N))
        try checkSpace(size, at: out.stagingPath)
        let taps = try ExtractTaps(
            features: out.staged("features.npy"), attention: attention ? out.staged("attention.npy") : nil,
                                   layers: reps, depth: L, N: N, T: T, C: C, H: H, prefix: c.prefixTokens,
                                       tokens: tokens,
                                   half: half, representation: rep)
        let driver = BatchDriver(images: loader, count: N, batch: loader.batch, label: "extract")
        try driver.run([ModelSource(model, taps: taps)], context)
        try taps.features.close()
        try taps.attention?.close()
        let rows = ExtractTaps.rows(tokens, T: T, prefix: c.prefixTokens)
        let featureShape = tokens == .cls || tokens == .mean ? [reps.count, N, C] : [reps.count, N, rows, C]
        let dtype = half ? "float16" : "float32"
        let tokensText: String
        switch tokens {
        case .all: tokensText = "all tokens, prefix (class, register) tokens first"
        case .patches: tokensText = "patch tokens only"
        case .cls: tokensText = "the class token"
        case .mean: tokensText = "the mean of the patch tokens"
        }
        var files = [ExtractMeta.File(name: "features.npy", dtype: dtype, shape: featureShape,
                                      axes: featureShape.count == 4
                                          ? "[representation (see definitions.layers), image, token, channel]"
                                          : "[representation (see definitions.layers), image, channel]",
                                      prefixTokens: tokens == .all ? c.prefixTokens : 0)]
        if attention {
            files.append(.init(name: "attention.npy", dtype: dtype, shape: [L, N, H, T, T],
                               axes: "[block 1..L, image, head, query token, key token]", prefixTokens: nil))
        }
        let meta = ExtractMeta(
            run: context.run, model: model.record, images: ImagesRecord(paths: loader.names, folder: folder),
                               rep: rep.rawValue, resize: loader.mode.rawValue, tokens: tokensText, layers: reps,
                               batch: loader.batch, files: files, blasCore: BLASRuntime.coreName,
                               blasThreads: BLASRuntime.threads).json
        try out.write("meta.json", meta.render() + "\n")
        return (["features.npy"] + (attention ? ["attention.npy"] : []) + ["meta.json"], N)
    }
}

/// Refuses a run whose output cannot fit on the disk, before any work is done.
func checkSpace(_ bytes: Int, at path: String) throws {
    var s = statvfs()
    guard statvfs(path, &s) == 0 else { return }
    let free = Int(s.f_bavail) * Int(s.f_frsize)
    if bytes > free {
        throw OutputError.cannotWrite(
            path: path,
            reason: String(
            format: "the output needs %.1f GB but only %.1f GB are free; use fewer images", Double(bytes) / 1e9,
            Double(free) / 1e9))
    }
}

/// extract's meta.json: the model, the images, what each array holds and how it was made.
public struct ExtractMeta: JSONEncodableRecord {
    public var run: RunRecord
    public var model: ModelRecord
    public var images: ImagesRecord
    public var rep, resize, tokens: String
    public var layers: [Int]
    public var batch: Int
    public var files: [File]
    public var blasCore: String
    public var blasThreads: Int

    /// One array written: dtype, shape and axes; the prefix tokens of its token axis (features).
    public struct File {
        public var name, dtype: String
        public var shape: [Int]
        public var axes: String
        public var prefixTokens: Int?
    }

    public var json: JSONValue {
        .object(run.fields + [
            ("checkpoint", .object(model.fileFields)),
            ("architecture", model.architecture.json),
            ("images", images.json),
            ("definitions", .object([
                ("rep", .string(rep)), ("resize", .string(resize)),
                ("normalisation", "ImageNet mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)"),
                ("tokens", .string(tokens)),
                ("layers", .array(layers.map { .int($0) })),
                ("batch", .int(batch)),
                ("attention", "softmax(q·kᵀ/√d_head) over all tokens, per head"),
            ])),
            ("files", .object(files.map { f in
                (f.name, .object([("dtype", .string(f.dtype)), ("shape", .array(f.shape.map { .int($0) })),
                                  ("axes", .string(f.axes))]
                                      + (f.prefixTokens.map { [("prefix_tokens", .int($0))] } ?? [])))
            })),
            ("blas", .object([("core", .string(blasCore)), ("threads", .int(blasThreads))])),
        ])
    }
}
