import Analysis
import ArgumentParser
import Engine
import Foundation
import Images
import Lens
import Train
import VitLensCore

struct Extract: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Dump per-layer representations and attention maps as .npy files.",
        discussion: "Writes features.npy [L+1, N, T, D] (the representation taps, all tokens, prefix tokens first), "
            + "attention.npy [L, N, H, T, T] (softmax probabilities) and meta.json, float32 by default; --layers, "
            + "--tokens, --no-attention and --dtype f16 narrow them. The size is printed before anything is written.")

    @OptionGroup var single: SingleCheckpoint
    var checkpoint: String { single.path }
    @OptionGroup var model: ModelOptions
    @OptionGroup var imageOptions: ImageOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var representation: RepresentationOptions
    var rep: RepresentationKind { representation.rep }
    @Option(help: "Representations to write, e.g. 0,6,12 (0: the embeddings' norm, L: the final norm; default: all).")
    var layers: RepList?
    @Flag(name: .customLong("no-attention"), help: "Do not write attention.npy.")
    var noAttention = false
    @Option(help: ArgumentHelp(
        "all (every token, prefix tokens first), patches, cls (one vector per image) or mean (of the "
        + "patch tokens, one vector per image)."))
    var tokens: ExtractTokens = .all
    @Option(help: "f32 or f16 (half the size).")
    var dtype: Dtype = .f32

    enum Dtype: String, ExpressibleByArgument { case f32, f16 }

    func validate() throws { try model.validate(models: 1) }

    func run() throws {
        model.applyThreads()
        let terminal = Terminal(quiet: output.quiet)
        let m = try load(model.request(checkpoint), terminal)
        if let layers, let bad = layers.list.first(where: { $0 > m.config.depth }) {
            throw UsageError("--layers \(bad): \(checkpoint) has representations 0…\(m.config.depth)")
        }
        var job = ExtractRun(
            model: m, images: try imageOptions.batches(size: m.config.imageSize, terminal), folder: imageOptions.folder,
            rep: rep)
        (job.layers, job.attention, job.tokens, job.half) = (layers?.list, !noAttention, tokens, dtype == .f16)
        try comparing { try job.validate() }
        var n = 0
        let (dir, files) = try writingReport(
            output.out, default: "reports/extract-\(m.name)", command: "extract", terminal) { out in
            let r = try job.run(into: out, RunContext(commandLine: commandLine, observer: terminal))
            n = r.images
            return r.files
        }
        terminal.wrote(dir, files, " for \(n) images")
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what a checkpoint holds: format, layout, architecture, heads, ignored keys, SHA-256.")

    @OptionGroup var single: SingleCheckpoint
    var checkpoint: String { single.path }
    @OptionGroup var model: ModelOptions
    @Flag(help: "Print JSON instead of text.")
    var json = false

    func validate() throws { try model.validate(models: 1) }

    func run() throws {
        let s = CheckpointSummary(try load(model.request(checkpoint), Terminal(quiet: true)))
        if json { return print(s.json.render()) }
        for (k, v) in s.lines { print(k.padding(toLength: 14, withPad: " ", startingAt: 0) + v) }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure forward-pass speed (or fine-tuning steps, or figure drawing): medians after a warm-up.")

    @Argument(help: "Checkpoint file or Hugging Face folder (not needed with --figures).")
    var checkpoint: String?
    @OptionGroup var model: ModelOptions
    @OptionGroup var batching: BatchOption
    @Option(help: "Timed batches (the median is reported).")
    var iters: Int = 5
    @Flag(help: "Print one JSON object instead of text.")
    var json = false
    @Flag(help: ArgumentHelp(
        "Also time the phases of the forward pass (linear layers, attention, norms, GELU, other) — or with "
        + "--train of the training step (and AdamW)."))
    var profile = false
    @Flag(help: "Time figure rendering instead: a 13x13 CKA heatmap to PNG and to SVG.")
    var figures = false
    @Flag(help: "Time fine-tuning steps instead (forward, backward, AdamW; 10 classes, all blocks).")
    var train = false

    func validate() throws {
        if train && model.precision == .bf16 {
            throw ValidationError("--precision bf16 is for the forward engine; --train times float32 training")
        }
        try model.validate(models: 1)
        if iters < 1 { throw ValidationError("--iters must be at least 1") }
        if checkpoint == nil && !figures { throw ValidationError("give a checkpoint to benchmark (or --figures)") }
    }

    func r(_ x: Double, _ digits: Double) -> JSONValue { .double((x * digits).rounded() / digits) }

    /// Each phase's share of the time, as `--profile` reports it.
    func profileFields(_ profile: [(String, Double)]?) -> [(String, JSONValue)] {
        profile.map { [("profile_fraction", .object($0.map { ($0.0, r($0.1, 1000)) }))] } ?? []
    }

    func printProfile(_ profile: [(String, Double)]?) {
        guard let p = profile else { return }
        print("profile: " + p.map { String(format: "%@ %.1f%%", $0.0, 100 * $0.1) }.joined(separator: ", "))
    }

    func run() throws {
        if figures {
            let (png, svg) = try Lens.Bench.figures(iters: iters)
            if json {
                let fields: [(String, JSONValue)] = [("heatmap_13x13_png_ms", r(png, 100)),
                                                     ("heatmap_13x13_svg_ms", r(svg, 100)), ("iters", .int(iters))]
                return print(JSONValue.object(fields).render())
            }
            return print(String(format: "figures: 13x13 CKA heatmap, 820x690 PNG %.1f ms, SVG %.2f ms (medians of %d)",
                                png, svg, iters))
        }
        model.applyThreads()
        let request = model.request(checkpoint!)
        let (m, loadMs) = try loading(request) { try Lens.Bench.load(request) }
        let batch = batching.batch, threads = BLASRuntime.threads
        if train {
            let t = try Lens.Bench.training(m, batch: batch, iters: iters, profile: profile)
            if json {
                let fields: [(String, JSONValue)] = [
                    ("train_images_per_second", r(t.imagesPerSecond, 100)), ("batch", .int(batch)),
                    ("threads", .int(threads)), ("median_seconds", .double(t.medianSeconds)), ("iters", .int(iters)),
                ]
                return print(JSONValue.object(fields + profileFields(t.profile)).render())
            }
            print(String(format: "%@: fine-tuning %.1f images/s (median of %d steps of %d: forward, backward, AdamW; "
                            + "%.3f s each), %d threads",
                         m.name, t.imagesPerSecond, iters, batch, t.medianSeconds, threads))
            return printProfile(t.profile)
        }
        let f = try Lens.Bench.forward(m, loadMs: loadMs, batch: batch, iters: iters, profile: profile)
        if json {
            let fields: [(String, JSONValue)] = [
                ("images_per_second", r(f.imagesPerSecond, 100)), ("batch", .int(batch)), ("threads", .int(threads)),
                ("precision", .string(m.engine.precision.rawValue)), ("gflops", r(f.gflops, 1000)),
                ("median_seconds", .double(f.medianSeconds)), ("iters", .int(iters)),
                ("blas_core", .string(BLASRuntime.coreName)), ("load_ms", r(loadMs, 10)),
                ("sgemm_peak_gflops", r(f.sgemmPeakGflops, 10)),
                ("fraction_of_peak", r(f.gflops / f.sgemmPeakGflops, 100_000)),
            ]
            return print(JSONValue.object(fields + profileFields(f.profile)).render())
        }
        let precision = m.engine.precision == .bf16 ? ", precision bf16 (oneDNN \(Precision.bf16Implementation))" : ""
        print(String(format: "%@: %.1f images/s (median of %d batches of %d, %.3f s each), %.1f GFLOP/s = %.0f%% of "
                        + "sgemm's %.1f GFLOP/s measured at start-up, %d threads, OpenBLAS %@",
                     m.name, f.imagesPerSecond, iters, batch, f.medianSeconds, f.gflops,
                     100 * f.gflops / f.sgemmPeakGflops, f.sgemmPeakGflops, threads, BLASRuntime.coreName) + precision)
        print(String(format: "checkpoint load: %.1f ms (median of 5: map, parse, convert to float32, check)", loadMs))
        printProfile(f.profile)
    }

}

struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Redraw a report's figures and index.html from its CSV/JSON, without recomputing anything.",
        discussion: "Reads cka.csv, attention.csv (+ attention_box.csv) or probe.csv and the report's JSON, and "
            + "writes the PNG/SVG figures and index.html again — into the same folder by default, each file "
            + "replaced atomically. For restyling: --vmin/--vmax, --ylim, --title, --scale, --compare.")

    @Argument(help: "A report folder written by vitlens cka, attention, probe or merge.")
    var dir: String
    @Option(help: "Write the figures here instead of into DIR.")
    var out: String?
    @Option(help: "Title of the figures (default: from the report).")
    var title: String?
    @Option(help: "An attention report folder to overlay in a second colour.")
    var compare: String?
    @OptionGroup var figures: FigureOptions
    @OptionGroup var colors: ColorRangeOptions
    @OptionGroup var y: YRangeOption
    @Flag(help: "No summary line.")
    var quiet = false

    func run() throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir),
            isDir.boolValue else { throw Failure("\(dir): no such report folder") }
        if let compare,
            !FileManager.default.fileExists(atPath: compare + "/attention.csv") {
            throw Failure("--compare \(compare): no attention.csv there") }
        let report = try AnyReport(reading: dir, compare: compare)
        let terminal = Terminal(quiet: quiet)
        let (outDir, files) = try writingReport(out ?? dir, default: dir, command: nil, terminal) { o in
            try report.draw(into: o, style: figureStyle(figures, colors: colors, y: y, title: title), terminal)
        }
        terminal.wrote(outDir, files)
    }
}

struct Maps: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw the attention on the images: class attention per block and attention rollout.",
        discussion: "For the first N images writes cls_attention.npy [N, L, H, g, g] (the class token's softmax "
            + "probabilities over the patches, per block and head), rollout.npy [N, g, g] (attention rollout, Abnar "
            + "& Zuidema 2020: heads fused, (A + I)/2 with rows renormalised, multiplied over the blocks, the class "
            + "token's row over the patches), maps.png/maps.svg (at most 8 images, spread evenly over the N, each "
            + "with the head-mean class attention of --layers and the rollout overlaid), maps.json and index.html.")

    @OptionGroup var single: SingleCheckpoint
    var checkpoint: String { single.path }
    @OptionGroup var model: ModelOptions
    @Option(help: "Folder of PNG/JPEG images, searched recursively, sorted by relative path.")
    var images: String
    @Option(parsing: .unconditional, help: "Use the first N images (the figure shows 8 of them, spread evenly).")
    var num: Int = 16
    @OptionGroup var decoding: DecodeOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "Blocks whose head-mean class attention is drawn, e.g. 1,6,12 (default: 1, L/2 and L).")
    var layers: LayerList?
    @Option(help: "How rollout fuses a block's heads: mean, max or min.")
    var fusion: HeadFusion = .mean
    @Option(parsing: .unconditional,
        help: "Fraction of each row of the fused attention set to 0 before rollout (the smallest entries), in [0, 1).")
    var discard: Double = 0
    @OptionGroup var figures: FigureOptions

    func validate() throws {
        try model.validate(models: 1)
        if num < 1 { throw ValidationError("--num must be at least 1") }
        if !(discard >= 0 && discard < 1) { throw ValidationError("--discard must be in [0, 1)") }
        if decoding.skipBadImages {
            throw ValidationError(
            "--skip-bad-images does not go with maps (the arrays' rows are the listed images, in order)") }
    }

    func run() throws {
        model.applyThreads()
        let terminal = Terminal(quiet: output.quiet)
        let m = try load(model.request(checkpoint), terminal)
        if let layers, let bad = layers.list.first(where: { $0 > m.config.depth }) {
            throw UsageError("--layers \(bad): \(checkpoint) has blocks 1…\(m.config.depth)")
        }
        var job = MapsRun(
            model: m, images: try decoding.batches(folder: images, num: num, size: m.config.imageSize, terminal),
            folder: images)
        (job.blocks, job.fusion, job.discard) = (layers?.list, fusion, discard)
        var n = 0
        let (dir, files) = try writingReport(output.out, default: "reports/maps-\(m.name)", command: "maps", terminal) {
            out in
            let context = RunContext(commandLine: commandLine, observer: terminal)
            let r = try job.run(into: out, context)
            n = r.json["images_used"]?.intValue ?? 0
            return ["cls_attention.npy", "rollout.npy", "maps.json"]
                + (try r.draw(into: out, style: figureStyle(figures), terminal))
        }
        terminal.wrote(dir, files, " for \(n) images")
    }
}

extension HeadFusion: ExpressibleByArgument {}
