import Analysis
import ArgumentParser
import Engine
import Foundation
import Images
import Lens
import Train
import VitLensCore

struct CKA: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cka",
        abstract: "Layer-by-layer CKA similarity between two models, one model and itself, or every pair of several "
            + "models.",
        discussion: "Minibatch CKA with the unbiased HSIC estimator (Nguyen et al. 2021, eq. 3), as mae-lite's "
            + "rep_cmp_analyzer: per batch of b images, K = XXᵀ and L = YYᵀ with zeroed diagonals, HSIC in float64, "
            + "averaged over batches with equal weight, with 95% bootstrap intervals over the batches. Writes "
            + "cka.csv, cka.json, the heatmap cka.png/cka.svg (with three or more models: every pair a < b, "
            + "cka_grid.png/.svg) and index.html.")

    @Argument(
        help: ArgumentHelp(
            "Checkpoint files or Hugging Face folders — or features computed elsewhere (.npy [L, N, T, D] or [L, "
            + "N, D], or a vitlens extract folder): A (rows of the matrix), B (columns; omitted: A against itself), or "
            + "three or more (every pair)."))
    var checkpoints: [String]
    var modelA: String { checkpoints[0] }
    var modelB: String? { checkpoints.count > 1 ? checkpoints[1] : nil }
    @OptionGroup var model: ModelOptions
    @Option(name: .customLong("heads-a"), help: "Heads of model A (overrides --heads).") var headsA: Int?
    @Option(name: .customLong("heads-b"), help: "Heads of model B (overrides --heads).") var headsB: Int?
    @Option(name: .customLong("prefix-tokens"),
        help: ArgumentHelp(
            "Leading class/register tokens of every 4-D .npy feature array (required for those; an extract folder "
            + "records its own).")) var prefixTokens: Int?
    @Option(name: .customLong("prefix-tokens-a"),
        help: "Prefix tokens of A's .npy features (overrides --prefix-tokens).") var prefixA: Int?
    @Option(name: .customLong("prefix-tokens-b"),
        help: "Prefix tokens of B's .npy features (overrides --prefix-tokens).") var prefixB: Int?
    @OptionGroup var imageOptions: ImageOptions
    @OptionGroup var output: OutputOptions
    @Option(help: ArgumentHelp(
        "patches (class and register tokens dropped, flattened), cls (not for models without a class "
        + "token, such as SigLIP), or mean (of the patch tokens)."))
    var tokens: TokenSelection = .patches
    @OptionGroup var representation: RepresentationOptions
    var rep: RepresentationKind { representation.rep }
    @OptionGroup var sharding: ShardOptions
    /// The shard this run handles (checked by ShardOptions.validate).
    var shard: ShardSpec? { (try? sharding.resolved()) ?? nil }
    @Option(parsing: .unconditional,
        help: ArgumentHelp(
            "Resamples of the 95% bootstrap intervals over minibatches (ci_low, ci_high in cka.csv; seeded); 0: "
            + "none."))
    var bootstrap: Int = 1000
    @OptionGroup var figures: FigureOptions
    @OptionGroup var colors: ColorRangeOptions

    func validate() throws {
        if checkpoints.isEmpty { throw ValidationError("give one checkpoint or more") }
        try model.validate(models: checkpoints.count)
        if checkpoints.count > 2
            && (headsA != nil || headsB != nil) {
            throw ValidationError("--heads-a/--heads-b go with two models; with more, repeat --heads once per model") }
        if checkpoints.count > 2
            && shard != nil {
            throw ValidationError(
            "--shard takes one or two models; shard each pair's run, or run all models at once without --shard") }
        if imageOptions.decoding.batch < 4 {
            throw ValidationError("--batch must be at least 4 for CKA (the unbiased HSIC needs b ≥ 4)") }
        if imageOptions.num < 4 { throw ValidationError("--num must be at least 4 for CKA") }
        for (n, v) in [("--heads-a", headsA), ("--heads-b", headsB)] {
            if let v, v < 1 { throw ValidationError("\(n) must be at least 1") } }
        for (n, v) in [
            ("--prefix-tokens", prefixTokens), ("--prefix-tokens-a", prefixA), ("--prefix-tokens-b", prefixB)] {
            if let v, v < 0 { throw ValidationError("\(n) must be at least 0") }
        }
        if bootstrap < 0 || bootstrap > 100_000 { throw ValidationError("--bootstrap must be between 0 and 100000") }
    }

    func run() throws {
        model.applyThreads()
        let terminal = Terminal(quiet: output.quiet)
        let overrides: [(Int?, String)] = [(headsA, "--heads-a"), (headsB, "--heads-b")]
        let prefixes = [prefixA, prefixB]
        let sides = try checkpoints.enumerated().map { i, path -> CKASide in
            if isFeatures(path) {
                let k = (i < 2 ? prefixes[i] : nil) ?? prefixTokens
                do { return .array(
                    try FeatureFile(
                    path: path, prefixTokens: k, name: model.names?.list[i])) } catch LensError.prefixTokensNeeded {
                    throw UsageError(
                        "\(path): a 4-D feature array needs --prefix-tokens K (or "
                        + "--prefix-tokens-\(i == 0 ? "a" : "b"))")
                }
            }
            return .model(try load(model.request(path, i, override: i < 2 ? overrides[i] : nil), terminal))
        }
        let firstModel = sides.lazy.compactMap { if case let .model(m) = $0 { return m }; return nil }.first
        let images = try firstModel.map { try imageOptions.batches(size: $0.config.imageSize, terminal) }
        let job = try comparing {
            try CKARun(
                sides: sides, images: images, folder: imageOptions.folder, batch: imageOptions.decoding.batch,
                tokens: tokens, rep: rep,
                       shard: shard, bootstrap: bootstrap)
        }
        let context = RunContext(commandLine: commandLine, observer: terminal)
        let (dir, files) = try writingReport(
            output.out, default: "reports/cka-" + sides.map(\.name).joined(separator: "-"), command: shard == nil
            ? "cka" : "cka shard", terminal) { out in
            if sides.count > 2 {
                let r = try job.runPairs(context)
                return try r.write(to: out) + r.draw(into: out, style: figureStyle(figures, colors: colors), terminal)
            }
            switch try job.run(context) {
            case let .partial(p): return try p.write(to: out, commandLine: commandLine)
            case let .report(r):
                return try r.write(to: out) + r.draw(into: out, style: figureStyle(figures, colors: colors), terminal)
            }
        }
        terminal.wrote(dir, files)
    }
}

/// Whether an argument of cka or attention is computed elsewhere: a .npy file, or a vitlens
/// extract folder.
func isFeatures(_ path: String) -> Bool {
    if path.hasSuffix(".npy") { return true }
    let fm = FileManager.default
    return fm.fileExists(atPath: path + "/features.npy") && fm.fileExists(atPath: path + "/meta.json")
}

struct Attention: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attention",
        abstract: "Attention distance and entropy per layer and head, with box statistics.",
        discussion: "Attention among patch tokens only (class token dropped, softmax again over the patch keys), as "
            + "mae-lite's attn_analyzer. Writes attention.csv, attention_box.csv, attention.json, the box figures "
            + "attention_distance/attention_entropy .png/.svg and index.html.")

    @Argument(
        help: ArgumentHelp(
            "Checkpoint files or Hugging Face folders — or attention probabilities computed elsewhere (.npy [L, "
            + "N, H, T, T], or a vitlens extract folder): the first, and any further ones overlaid on the same images "
            + "(as --compare)."))
    var checkpoints: [String]
    var checkpoint: String { checkpoints[0] }
    /// The overlaid models: further arguments, then --compare.
    var compared: [String] { Array(checkpoints.dropFirst()) + (compare.map { [$0] } ?? []) }
    @OptionGroup var model: ModelOptions
    @OptionGroup var imageOptions: ImageOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "pixels (distance scale = patch size) or mae-lite (scale 14, as mae-lite's code).")
    var convention: DistanceConvention = .pixels
    @Flag(name: .customLong("per-image"), help: "Box statistics over heads × images instead of over heads.")
    var perImage = false
    @OptionGroup var sharding: ShardOptions
    /// The shard this run handles (checked by ShardOptions.validate).
    var shard: ShardSpec? { (try? sharding.resolved()) ?? nil }
    @OptionGroup var figures: FigureOptions
    @OptionGroup var y: YRangeOption
    @Option(help: ArgumentHelp(
        "A second checkpoint whose statistics are computed in the same pass and overlaid in the figures "
        + "(its report goes to compare/)."))
    var compare: String?
    @Option(name: .customLong("compare-heads"), help: "Heads of the --compare model.")
    var compareHeads: Int?
    @Option(name: .customLong("prefix-tokens"),
        help: ArgumentHelp(
            "Leading class/register tokens of every .npy attention array (required for those; an extract folder "
            + "records its own)."))
    var prefixTokens: Int?
    @Option(name: .customLong("patch-size"),
        help: ArgumentHelp(
            "Pixels per patch of the model a .npy attention array came from (for distances in pixels; an extract "
            + "folder records its own)."))
    var patchSize: Int?

    func validate() throws {
        if checkpoints.isEmpty { throw ValidationError("give a checkpoint") }
        try model.validate(models: 1 + compared.count)
        if compareHeads != nil
            && compare == nil {
            throw ValidationError(
            "--compare-heads goes with --compare M2 (with several checkpoints, repeat --heads once per model)") }
        if compareHeads != nil
            && model.heads.count > 1 {
            throw ValidationError("--compare-heads and one --heads per model say the same thing twice; give one") }
        if !compared.isEmpty && shard != nil {
            throw ValidationError("--compare cannot be combined with --shard; plot two merged reports with "
                                      + "`vitlens plot DIR --compare DIR2`")
        }
        if let compareHeads, compareHeads < 1 { throw ValidationError("--compare-heads must be at least 1") }
        if let prefixTokens, prefixTokens < 0 { throw ValidationError("--prefix-tokens must be at least 0") }
        if let patchSize, patchSize < 1 { throw ValidationError("--patch-size must be at least 1") }
    }

    func run() throws {
        model.applyThreads()
        let terminal = Terminal(quiet: output.quiet)
        var imageSize = model.imageSize
        let sides = try ([checkpoint] + compared).enumerated().map { i, path -> AttentionSide in
            if isFeatures(path) {
                do { return .array(
                    try AttentionFile(
                    path: path, prefixTokens: prefixTokens, patch: patchSize,
                    name: model.names?.list[i])) } catch LensError.prefixTokensNeeded {
                    throw UsageError(
                        "\(path): an attention array needs --prefix-tokens K (its leading class/register tokens)")
                }
            }
            var r = model.request(path, i, imageSize: imageSize)
            if path == compare, let compareHeads { (r.heads, r.headsGivenAs) = (compareHeads, "--compare-heads") }
            // --heads is the first model's
            if model.heads.count == 1 && path == compare && compareHeads == nil { r.heads = nil }
            let m = try load(r, terminal)
            imageSize = imageSize ?? m.config.imageSize
            return .model(m)
        }
        let images = try imageSize.map { try imageOptions.batches(size: $0, terminal) }
        let job: AttentionRun
        do {
            job = try AttentionRun(
                sides: sides, images: images, folder: imageOptions.folder, batch: imageOptions.decoding.batch,
                                   convention: convention, perImage: perImage, shard: shard)
        } catch let LensError.patchSizeNeeded(path) {
            throw UsageError(
                "\(path): distances in pixels need the patch size: give --patch-size P, or --convention mae-lite")
        }
        let (dir, files) = try writingReport(
            output.out, default: "reports/attention-" + sides.map(\.name).joined(separator: "-vs-"),
            command: shard == nil ? "attention" : "attention shard", terminal) { out in
            switch try job.run(RunContext(commandLine: commandLine, observer: terminal)) {
            case let .partial(p): return try p.write(to: out, commandLine: commandLine)
            case let .report(r): return try r.write(to: out)
                + r.draw(into: out, style: figureStyle(figures, y: y), terminal)
            }
        }
        terminal.wrote(dir, files)
    }
}

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Combine the partial.json of shards (--shard i/n) into the report a single run gives.")

    @Argument(help: "Shard output folders (or their partial.json files), all n of them.")
    var shards: [String]
    @Option(help: "Report folder (default: reports/<command>-merged).")
    var out: String?
    @Flag(help: "No summary line.")
    var quiet = false
    @OptionGroup var figures: FigureOptions
    @OptionGroup var colors: ColorRangeOptions
    @OptionGroup var y: YRangeOption

    func validate() throws {
        if shards.isEmpty { throw ValidationError("give the shard folders to merge") }
    }

    func run() throws {
        let terminal = Terminal(quiet: quiet)
        let parts = try shards.map(Partial.read)
        let merged = try MergedReport.merge(parts, sources: shards, commandLine: commandLine, observer: terminal)
        let style = figureStyle(figures, colors: colors, y: y)
        let (dir, _) = try writingReport(
            out, default: "reports/\(parts[0].command)-merged", command: parts[0].command, terminal) { out in
            switch merged {
            case let .cka(r): return try r.write(to: out) + r.draw(into: out, style: style, terminal)
            case let .attention(r): return try r.write(to: out) + r.draw(into: out, style: style, terminal)
            case let .similarity(r): return try r.write(to: out) + r.draw(into: out, style: style, terminal)
            }
        }
        if !quiet { terminal.say("merged \(parts.count) shards into \(dir)") }
    }
}
