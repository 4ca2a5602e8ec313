import Analysis
import ArgumentParser
import Checkpoint
import Engine
import Foundation
import Images
import Render
import VitLensCore

extension TokenSelection: ExpressibleByArgument {}
extension DistanceConvention: ExpressibleByArgument {}

/// Computes each representation's Gram matrix as the engine produces it; nothing else is kept.
final class GramTaps: ForwardTaps {
    let config: ViTConfig
    let selection: TokenSelection
    var grams: [Gram] = []
    private var scratch: [Float] = []

    init(config: ViTConfig, selection: TokenSelection) { self.config = config; self.selection = selection }

    var wantsRepresentations: Bool { true }
    var wantsAttentionLogits: Bool { false }
    var wantsAttentionProbabilities: Bool { false }

    func representation(_ index: Int, _ x: UnsafePointer<Float>, batch: Int) {
        if index == 0 { grams.removeAll(keepingCapacity: true) }
        grams.append(Gram.of(x, batch: batch, tokens: config.tokens, channels: config.dim,
                             prefix: config.prefixTokens, selection: selection, scratch: &scratch))
    }

    func attention(layer: Int, image: Int, logits: UnsafePointer<Float>?, probabilities: UnsafePointer<Float>) {}
}

final class AttentionTaps: ForwardTaps {
    let collector: AttentionCollector
    init(_ c: AttentionCollector) { collector = c }
    var wantsRepresentations: Bool { false }
    var wantsAttentionLogits: Bool { false }
    var wantsAttentionProbabilities: Bool { true }
    func representation(_ index: Int, _ x: UnsafePointer<Float>, batch: Int) {}
    func attention(layer: Int, image: Int, logits: UnsafePointer<Float>?, probabilities: UnsafePointer<Float>) {
        collector.add(layer: layer, image: image, probabilities: probabilities)
    }
}

func modelJSON(_ m: LoadedModel) -> JSONValue {
    .object([
        ("path", .string(m.checkpoint.path)), ("sha256", .string(m.checkpoint.sha256())),
        ("format", .string(m.checkpoint.format)), ("layout", .string(m.checkpoint.layout.rawValue)),
        ("state_dict", .string(m.checkpoint.location)), ("architecture", architectureJSON(m.config)),
    ])
}

struct CKA: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cka",
        abstract: "Layer-by-layer CKA similarity between two models (or one model and itself), SPEC §5.",
        discussion: """
        Minibatch CKA with the unbiased HSIC estimator (Nguyen et al. 2021, eq. 3), as mae-lite's
        rep_cmp_analyzer: per batch of b images, K = XXᵀ and L = YYᵀ with zeroed diagonals, HSIC in
        float64, averaged over batches with equal weight. Writes cka.csv, cka.json, the heatmap
        cka.png/cka.svg and index.html.
        """)

    @Argument(help: "Model A (rows of the matrix).")
    var modelA: String
    @Argument(help: "Model B (columns); omitted: A against itself.")
    var modelB: String?

    @Option(help: "Heads of both models.") var heads: Int?
    @Option(name: .customLong("heads-a"), help: "Heads of model A.") var headsA: Int?
    @Option(name: .customLong("heads-b"), help: "Heads of model B.") var headsB: Int?
    @Option(name: .customLong("image-size"), help: "Run both models at this image size.") var imageSize: Int?
    @Option(help: "Threads (default: all cores).") var threads: Int?
    @OptionGroup var imageOptions: ImageOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "patches (class token dropped, flattened), cls, or mean (of the patch tokens).")
    var tokens: TokenSelection = .patches
    @Option(help: "normed (blocks[i].norm1 outputs, then the final norm) or residual.")
    var rep: RepresentationKind = .normed
    @Option(help: "i/n: process every n-th batch starting at i and write partial.json for `vitlens merge`.")
    var shard: ShardSpec?
    @OptionGroup var figures: FigureOptions
    @OptionGroup var range: ColorRangeOptions

    func validate() throws {
        if imageOptions.batch < 4 { throw ValidationError("--batch must be at least 4 for CKA (the unbiased HSIC needs b ≥ 4)") }
        if imageOptions.num < 4 { throw ValidationError("--num must be at least 4 for CKA") }
        for (n, v) in [("--heads", heads), ("--heads-a", headsA), ("--heads-b", headsB), ("--threads", threads), ("--image-size", imageSize)] {
            if let v, v < 1 { throw ValidationError("\(n) must be at least 1") }
        }
        if let imageSize, imageSize > 4096 { throw ValidationError("--image-size must be between 1 and 4096") }
    }

    func run() throws {
        if let threads { BLASRuntime.setThreads(threads); Workers.count = threads }
        let a = try loadModel(modelA, heads: headsA ?? heads, imageSize: imageSize, quiet: output.quiet)
        let b = try modelB.map { try loadModel($0, heads: headsB ?? heads, imageSize: imageSize, quiet: output.quiet) }
        if let b {
            guard a.config.imageSize == b.config.imageSize else {
                throw EngineError.input("\(modelA) runs at \(a.config.imageSize)px but \(modelB!) at \(b.config.imageSize)px; give --image-size to run both at one size")
            }
            if tokens == .patches && a.config.patches != b.config.patches {
                throw EngineError.input("--tokens patches needs the same token grid: \(modelA) has \(a.config.runGrid)x\(a.config.runGrid) patches, \(modelB!) \(b.config.runGrid)x\(b.config.runGrid) (use --tokens cls or mean)")
            }
        }
        a.engine.representation = rep
        b?.engine.representation = rep
        let stream = try ImageStream(imageOptions, size: a.config.imageSize)
        guard stream.paths.count >= 4 else {
            throw ImageError.folder(path: imageOptions.images, reason: "CKA needs at least 4 images, found \(stream.paths.count)")
        }
        let names = [a.name] + (b.map { [$0.name] } ?? [])
        let outDir = try OutputDirectory(output.out ?? "reports/cka-" + names.joined(separator: "-"))
        defer { outDir.discard() }

        let la = a.config.depth + 1, lb = (b?.config.depth ?? a.config.depth) + 1
        let setup = JSONValue.object([
            ("command", "cka"),
            ("model_a", modelJSON(a)), ("model_b", b.map(modelJSON) ?? .string("same as model_a")),
            ("images", imagesJSON(stream.paths, folder: imageOptions.images)),
            ("definitions", .object([
                ("tokens", .string(tokens.rawValue)), ("rep", .string(rep.rawValue)),
                ("estimator", "minibatch CKA, unbiased HSIC (Nguyen et al. 2021 eq. 3), K and L with zeroed diagonals, float64, batches weighted equally"),
                ("batch", .int(stream.batch)), ("resize", .string(stream.mode.rawValue)), ("image_size", .int(a.config.imageSize)),
                ("skip_bad_images", .bool(stream.skipBad)),
            ])),
            ("layers_a", .int(la)), ("layers_b", .int(lb)), ("total_batches", .int(stream.batchCount)),
        ])

        let tapsA = GramTaps(config: a.config, selection: tokens)
        let tapsB = b.map { GramTaps(config: $0.config, selection: tokens) }
        let mine = stream.batches(for: shard)
        let total = mine.reduce(0) { $0 + stream.imageCount(ofBatch: $1) }
        let progress = Progress("cka", total: total, quiet: output.quiet)
        var records: [CKABatch] = [], dropped: [Int] = [], done = 0
        try stream.forEach(batches: mine) { index, x in
            let n = x.shape[0]
            done += stream.imageCount(ofBatch: index)
            if n < 4 {
                if !output.quiet { notice("batch \(index) has \(n) image(s); CKA needs at least 4, so it is dropped") }
                dropped.append(index)
                progress.update(done)
                return
            }
            try a.run(x, taps: tapsA, batch: index)
            var gb = tapsA.grams
            if let b, let tapsB {
                try b.run(x, taps: tapsB, batch: index)
                gb = tapsB.grams
            }
            records.append(CKABatch(index: index, a: tapsA.grams, b: gb))
            progress.update(done)
        }
        progress.finish()
        let commandLine = CommandLine.arguments.joined(separator: " ")
        var files = shard == nil ? ["cka.csv", "cka.json"] : [Partial.fileName]
        if let shard {
            let p = Partial(command: "cka", shard: shard, setup: setup, batches: records.map(\.json), dropped: dropped)
            try outDir.write(Partial.fileName, p.json(commandLine: commandLine).render() + "\n")
        } else {
            _ = try CKAReport.write(outDir, setup: setup, batches: records, dropped: dropped, commandLine: commandLine)
            files += try ReportFigures.render(sourceDir: outDir.stagingPath, out: outDir,
                                              style: FigureStyle(scale: figures.scale, vmin: range.vmin, vmax: range.vmax))
        }
        try outDir.commit()
        if !output.quiet {
            FileHandle.standardError.write(Data("wrote \(outDir.finalPath)/{\(files.joined(separator: ", "))}\n".utf8))
        }
    }
}

struct Attention: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attention",
        abstract: "Attention distance and entropy per layer and head, with box statistics (SPEC §6).",
        discussion: """
        Attention among patch tokens only (class token dropped, softmax again over the patch keys),
        as mae-lite's attn_analyzer. Writes attention.csv, attention_box.csv, attention.json, the box
        figures attention_distance/attention_entropy .png/.svg and index.html.
        """)

    @Argument(help: "Checkpoint file or Hugging Face folder.")
    var checkpoint: String
    @OptionGroup var model: ModelOptions
    @OptionGroup var imageOptions: ImageOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "pixels (distance scale = patch size) or mae-lite (scale 14, as mae-lite's code).")
    var convention: DistanceConvention = .pixels
    @Flag(name: .customLong("per-image"), help: "Box statistics over heads × images instead of over heads.")
    var perImage = false
    @Option(help: "i/n: process every n-th batch starting at i and write partial.json for `vitlens merge`.")
    var shard: ShardSpec?
    @OptionGroup var figures: FigureOptions

    @Option(help: "A second checkpoint whose statistics are computed in the same pass and overlaid in the figures (its report goes to compare/).")
    var compare: String?
    @Option(name: .customLong("compare-heads"), help: "Heads of the --compare model.")
    var compareHeads: Int?

    func validate() throws {
        if compare != nil && shard != nil { throw ValidationError("--compare cannot be combined with --shard; plot two merged reports with `vitlens plot DIR --compare DIR2`") }
        if let compareHeads, compareHeads < 1 { throw ValidationError("--compare-heads must be at least 1") }
    }

    /// The report's setup block for one model (the same for a single run, shards and merge).
    func setup(_ m: LoadedModel, stream: ImageStream) -> JSONValue {
        let c = m.config, scale = convention.scale(patch: c.patch)
        return .object([
            ("command", "attention"), ("model", modelJSON(m)),
            ("images", imagesJSON(stream.paths, folder: imageOptions.images)),
            ("definitions", .object([
                ("convention", .string(convention.rawValue)), ("distance_scale", .double(scale)),
                ("distance_unit", .string(convention == .pixels ? "pixels" : "mae-lite units (patch grid steps × 14)")),
                ("entropy_unit", "nats"),
                ("attention", "patch tokens only: prefix rows/columns dropped, softmax again over the patch keys (mae-lite)"),
                ("entropy", "−Σ p·ln(p + 1e−6) per query, mean over queries and images"),
                ("distance", "Σ p·‖g(q) − g(k)‖₂·scale per query, mean over queries and images"),
                ("box", .string("per layer over heads" + (perImage ? " × images" : "") + "; quartiles linear (numpy), whiskers at 1.5·IQR")),
                ("batch", .int(stream.batch)), ("resize", .string(stream.mode.rawValue)), ("image_size", .int(c.imageSize)),
                ("skip_bad_images", .bool(stream.skipBad)),
            ])),
            ("layers", .int(c.depth)), ("heads", .int(c.heads)), ("per_image", .bool(perImage)),
            ("total_batches", .int(stream.batchCount)),
        ])
    }

    func collector(_ m: LoadedModel) -> AttentionCollector {
        let c = m.config
        return AttentionCollector(geometry: AttentionGeometry(grid: c.runGrid, prefix: c.prefixTokens, scale: convention.scale(patch: c.patch)),
                                  layers: c.depth, heads: c.heads, perImage: perImage)
    }

    func run() throws {
        model.applyThreads()
        let m = try loadModel(checkpoint, heads: model.heads, imageSize: model.imageSize, quiet: output.quiet)
        let m2 = try compare.map { try loadModel($0, heads: compareHeads, imageSize: model.imageSize ?? m.config.imageSize, quiet: output.quiet) }
        let stream = try ImageStream(imageOptions, size: m.config.imageSize)
        let outDir = try OutputDirectory(output.out ?? "reports/attention-\(m.name)" + (m2.map { "-vs-\($0.name)" } ?? ""))
        defer { outDir.discard() }
        let models = [m] + (m2.map { [$0] } ?? [])
        let collectors = models.map(collector)
        let taps = collectors.map(AttentionTaps.init)
        let mine = stream.batches(for: shard)
        let total = mine.reduce(0) { $0 + stream.imageCount(ofBatch: $1) }
        let progress = Progress("attention", total: total, quiet: output.quiet)
        var records = [[AttentionBatch]](repeating: [], count: models.count), done = 0
        try stream.forEach(batches: mine) { index, x in
            for k in models.indices {
                collectors[k].begin(index: index, size: x.shape[0])
                if x.shape[0] > 0 { try models[k].run(x, taps: taps[k], batch: index) }
                records[k].append(collectors[k].finish())
            }
            done += stream.imageCount(ofBatch: index)
            progress.update(done)
        }
        progress.finish()
        let commandLine = CommandLine.arguments.joined(separator: " ")
        var files = shard == nil ? ["attention.csv", "attention_box.csv", "attention.json"] : [Partial.fileName]
        if let shard {
            let p = Partial(command: "attention", shard: shard, setup: setup(m, stream: stream), batches: records[0].map(\.json), dropped: [])
            try outDir.write(Partial.fileName, p.json(commandLine: commandLine).render() + "\n")
        } else {
            guard records[0].reduce(0, { $0 + $1.size }) > 0 else { throw ImageError.folder(path: imageOptions.images, reason: "no readable images") }
            try AttentionReport.write(outDir, setup: setup(m, stream: stream), batches: records[0], commandLine: commandLine)
            if let m2 {
                try outDir.makeFolder("compare")
                try AttentionReport.write(outDir, setup: setup(m2, stream: stream), batches: records[1], commandLine: commandLine, prefix: "compare/")
                files.append("compare/")
            }
            files += try ReportFigures.render(sourceDir: outDir.stagingPath, out: outDir, style: FigureStyle(scale: figures.scale))
        }
        try outDir.commit()
        if !output.quiet {
            FileHandle.standardError.write(Data("wrote \(outDir.finalPath)/{\(files.joined(separator: ", "))}\n".utf8))
        }
    }
}

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Combine the partial.json of shards (--shard i/n) into the report a single run gives (SPEC §10).")

    @Argument(help: "Shard output folders (or their partial.json files), all n of them.")
    var shards: [String]
    @Option(help: "Report folder (default: reports/<command>-merged).")
    var out: String?
    @Flag(help: "No summary line.")
    var quiet = false
    @OptionGroup var figures: FigureOptions

    func validate() throws {
        if shards.isEmpty { throw ValidationError("give the shard folders to merge") }
    }

    func run() throws {
        let parts = try shards.map(Partial.read)
        let first = parts[0]
        let setupText = first.setup.render()
        for (p, path) in zip(parts, shards) {
            guard p.command == first.command else { throw MergeError("\(path): a \(p.command) shard cannot merge with a \(first.command) shard") }
            guard p.shard.count == first.shard.count else { throw MergeError("\(path): shard \(p.shard) of a \(p.shard.count)-way split, others are \(first.shard.count)-way") }
            guard p.setup.render() == setupText else {
                throw MergeError("\(path): its models, images or definitions differ from \(shards[0])'s; shards must come from one command line")
            }
        }
        let seen = parts.map(\.shard.index)
        if let dup = seen.first(where: { i in seen.filter { $0 == i }.count > 1 }) { throw MergeError("shard \(dup)/\(first.shard.count) given twice") }
        let missing = (0..<first.shard.count).filter { !seen.contains($0) }
        guard missing.isEmpty else { throw MergeError("missing shard(s) " + missing.map { "\($0)/\(first.shard.count)" }.joined(separator: ", ")) }

        let outDir = try OutputDirectory(out ?? "reports/\(first.command)-merged")
        defer { outDir.discard() }
        let extra: [(String, JSONValue)] = [("merged_from", .array(shards.map { .string($0) }))]
        let commandLine = CommandLine.arguments.joined(separator: " ")
        let dropped = parts.flatMap(\.dropped).sorted()
        switch first.command {
        case "cka":
            guard let la = first.setup["layers_a"]?.intValue, let lb = first.setup["layers_b"]?.intValue else { throw MergeError("partial.json lacks layers") }
            let batches = try parts.flatMap { try $0.batches.map { try CKABatch(json: $0, layersA: la, layersB: lb) } }
            _ = try CKAReport.write(outDir, setup: first.setup, batches: batches, dropped: dropped, commandLine: commandLine, extra: extra)
        case "attention":
            guard let l = first.setup["layers"]?.intValue, let h = first.setup["heads"]?.intValue,
                  case let .bool(per)? = first.setup["per_image"] else { throw MergeError("partial.json lacks layers/heads") }
            let batches = try parts.flatMap { try $0.batches.map { try AttentionBatch(json: $0, layers: l, heads: h, perImage: per) } }
            try AttentionReport.write(outDir, setup: first.setup, batches: batches, commandLine: commandLine, extra: extra)
        default:
            throw MergeError("unknown command '\(first.command)' in partial.json")
        }
        try ReportFigures.render(sourceDir: outDir.stagingPath, out: outDir, style: FigureStyle(scale: figures.scale))
        try outDir.commit()
        if !quiet { FileHandle.standardError.write(Data("merged \(parts.count) shards into \(outDir.finalPath)\n".utf8)) }
    }
}
