import ArgumentParser
import Checkpoint
import Engine
import Foundation
import Images
import Render
import VitLensCore

struct Extract: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Dump per-layer representations and attention maps as .npy files (SPEC §8).",
        discussion: """
        Writes features.npy float32 [L+1, N, T, D] (the representations of SPEC §4, all tokens,
        class token first), attention.npy float32 [L, N, H, T, T] (softmax probabilities) and meta.json.
        """)

    @Argument(help: "Checkpoint file or Hugging Face folder.")
    var checkpoint: String
    @OptionGroup var model: ModelOptions
    @OptionGroup var imageOptions: ImageOptions
    @OptionGroup var output: OutputOptions

    @Option(help: "normed (blocks[i].norm1 outputs, then the final norm) or residual (the raw residual stream).")
    var rep: RepresentationKind = .normed

    func run() throws {
        model.applyThreads()
        let m = try loadModel(checkpoint, heads: model.heads, imageSize: model.imageSize, quiet: output.quiet)
        let c = m.config
        let stream = try ImageStream(imageOptions, size: c.imageSize)
        let outDir = try OutputDirectory(output.out ?? "reports/extract-\(m.name)")
        defer { outDir.discard() }
        let paths = try stream.usable()
        let N = paths.count, T = c.tokens, C = c.dim, L = c.depth, H = c.heads
        let bytes = 4 * (L + 1) * N * T * C + 4 * L * N * H * T * T
        try checkSpace(bytes, at: outDir.stagingPath)

        let taps = try ExtractTaps(outDir: outDir, L: L, N: N, T: T, C: C, H: H)
        m.engine.representation = rep
        let progress = Progress("extract", total: N, quiet: output.quiet)
        try stream.forEachBatch(paths) { batch, start in
            taps.batchStart = start
            try m.run(batch, taps: taps, batch: start / stream.batch)
            if let e = taps.error { throw e }
            progress.update(start + batch.shape[0])
        }
        progress.finish()
        try taps.features.close()
        try taps.attention.close()

        let meta: JSONValue = .object([
            ("vitlens_version", .string(vitlensVersion)),
            ("command_line", .string(CommandLine.arguments.joined(separator: " "))),
            ("checkpoint", checkpointJSON(m)),
            ("architecture", architectureJSON(c)),
            ("images", imagesJSON(paths, folder: imageOptions.images)),
            ("definitions", .object([
                ("rep", .string(rep.rawValue)), ("resize", .string(stream.mode.rawValue)),
                ("normalisation", .string("ImageNet mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)")),
                ("tokens", .string("all tokens, prefix (class) token first")),
                ("batch", .int(stream.batch)),
                ("attention", .string("softmax(q·kᵀ/√d_head) over all tokens, per head")),
            ])),
            ("files", .object([
                ("features.npy", .object([("dtype", "float32"), ("shape", .array([L + 1, N, T, C].map { .int($0) })),
                                          ("axes", "[layer 0..L, image, token, channel]")])),
                ("attention.npy", .object([("dtype", "float32"), ("shape", .array([L, N, H, T, T].map { .int($0) })),
                                           ("axes", "[block 1..L, image, head, query token, key token]")])),
            ])),
            ("blas", .object([("core", .string(BLASRuntime.coreName)), ("threads", .int(BLASRuntime.threads))])),
        ])
        try outDir.write("meta.json", meta.render() + "\n")
        try outDir.commit()
        if !output.quiet {
            FileHandle.standardError.write(Data("wrote \(outDir.finalPath)/{features.npy, attention.npy, meta.json} for \(N) images\n".utf8))
        }
    }
}

/// Streams the taps of each batch into the two .npy files at their final offsets.
final class ExtractTaps: ForwardTaps {
    let features: NpyWriter
    let attention: NpyWriter
    let N, T, C, H: Int
    var batchStart = 0
    private let lock = NSLock()
    private var firstError: Error?
    var error: Error? { lock.lock(); defer { lock.unlock() }; return firstError }
    private func record(_ e: Error) { lock.lock(); if firstError == nil { firstError = e }; lock.unlock() }

    init(outDir: OutputDirectory, L: Int, N: Int, T: Int, C: Int, H: Int) throws {
        features = try NpyWriter(path: outDir.staged("features.npy"), shape: [L + 1, N, T, C])
        attention = try NpyWriter(path: outDir.staged("attention.npy"), shape: [L, N, H, T, T])
        self.N = N; self.T = T; self.C = C; self.H = H
    }

    var wantsRepresentations: Bool { true }
    var wantsAttentionLogits: Bool { false }
    var wantsAttentionProbabilities: Bool { true }

    func representation(_ index: Int, _ x: UnsafePointer<Float>, batch: Int) {
        do { try features.write(x, count: batch * T * C, at: (index * N + batchStart) * T * C) } catch { record(error) }
    }

    func attention(layer: Int, image: Int, logits: UnsafePointer<Float>?, probabilities: UnsafePointer<Float>) {
        // Called concurrently for different images: positional writes need no lock.
        do { try attention.write(probabilities, count: H * T * T, at: (layer * N + batchStart + image) * H * T * T) } catch { record(error) }
    }
}

func checkpointJSON(_ m: LoadedModel) -> JSONValue {
    .object([
        ("path", .string(m.checkpoint.path)), ("sha256", .string(m.checkpoint.sha256())),
        ("format", .string(m.checkpoint.format)), ("layout", .string(m.checkpoint.layout.rawValue)),
        ("state_dict", .string(m.checkpoint.location)),
    ])
}

/// The image list, or for long lists its SHA-256 (of the newline-joined paths) and count.
func imagesJSON(_ paths: [String], folder: String) -> JSONValue {
    var sha = SHA256()
    sha.update(Array(paths.joined(separator: "\n").utf8))
    var fields: [(String, JSONValue)] = [("folder", .string(folder)), ("count", .int(paths.count)),
                                         ("paths_sha256", .string(sha.finalize()))]
    if paths.count <= 4096 { fields.append(("paths", .array(paths.map { .string($0) }))) }
    return .object(fields)
}

/// Refuses a run whose output cannot fit on the disk, before any work is done.
func checkSpace(_ bytes: Int, at path: String) throws {
    var s = statvfs()
    guard statvfs(path, &s) == 0 else { return }
    let free = Int(s.f_bavail) * Int(s.f_frsize)
    if bytes > free {
        throw OutputError.cannotWrite(path: path, reason: String(format: "the output needs %.1f GB but only %.1f GB are free; use a smaller --num", Double(bytes) / 1e9, Double(free) / 1e9))
    }
}
