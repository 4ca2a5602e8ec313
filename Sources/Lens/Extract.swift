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

    public init(model: AnalysisModel, images: ImageBatches, folder: String, rep: RepresentationKind) {
        (self.model, self.images, self.folder, self.rep) = (model, images, folder, rep)
    }

    /// Writes the files into `out` (staged; the caller commits). Returns the file names and N.
    public func run(into out: OutputDirectory, _ context: RunContext) throws -> (files: [String], images: Int) {
        let c = model.config
        // N must be known before the first forward pass (it is in the .npy headers): with
        // skipping, the unreadable images are found first.
        let loader = images.skipBad ? images.subset(try images.readable()) : images
        let N = loader.items.count, T = c.tokens, C = c.dim, L = c.depth, H = c.heads
        try checkSpace(4 * (L + 1) * N * T * C + 4 * L * N * H * T * T, at: out.stagingPath)
        let taps = try ExtractTaps(features: out.staged("features.npy"), attention: out.staged("attention.npy"), L: L, N: N, T: T, C: C, H: H)
        model.engine.representation = rep
        try loader.forEach { b in
            taps.batchStart = b.index * loader.batch
            try model.run(b.images, taps: taps, batch: b.index)
            if let e = taps.error { throw e }
            context.observer.progress("extract", done: taps.batchStart + b.count, total: N)
        }
        context.observer.progressEnded()
        try taps.features.close()
        try taps.attention.close()

        let meta: JSONValue = .object(context.header + [
            ("checkpoint", .object([
                ("name", .string(model.name)), ("path", .string(model.checkpoint.path)), ("sha256", .string(model.sha256)),
                ("format", .string(model.checkpoint.format)), ("layout", .string(model.checkpoint.layout.rawValue)),
                ("state_dict", .string(model.checkpoint.location)),
            ])),
            ("architecture", model.architecture),
            ("images", imagesJSON(loader.names, folder: folder)),
            ("definitions", .object([
                ("rep", .string(rep.rawValue)), ("resize", .string(loader.mode.rawValue)),
                ("normalisation", "ImageNet mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)"),
                ("tokens", "all tokens, prefix (class) token first"),
                ("batch", .int(loader.batch)),
                ("attention", "softmax(q·kᵀ/√d_head) over all tokens, per head"),
            ])),
            ("files", .object([
                ("features.npy", .object([("dtype", "float32"), ("shape", .array([L + 1, N, T, C].map { .int($0) })),
                                          ("axes", "[layer 0..L, image, token, channel]")])),
                ("attention.npy", .object([("dtype", "float32"), ("shape", .array([L, N, H, T, T].map { .int($0) })),
                                           ("axes", "[block 1..L, image, head, query token, key token]")])),
            ])),
            ("blas", .object([("core", .string(BLASRuntime.coreName)), ("threads", .int(BLASRuntime.threads))])),
        ])
        try out.write("meta.json", meta.render() + "\n")
        return (["features.npy", "attention.npy", "meta.json"], N)
    }
}

/// Refuses a run whose output cannot fit on the disk, before any work is done.
func checkSpace(_ bytes: Int, at path: String) throws {
    var s = statvfs()
    guard statvfs(path, &s) == 0 else { return }
    let free = Int(s.f_bavail) * Int(s.f_frsize)
    if bytes > free {
        throw OutputError.cannotWrite(path: path, reason: String(format: "the output needs %.1f GB but only %.1f GB are free; use fewer images", Double(bytes) / 1e9, Double(free) / 1e9))
    }
}
