import Analysis
import ArgumentParser
import Engine
import Foundation
import Lens
import VitLensCore

extension RDMComparison: ExpressibleByArgument {}

struct Similarity: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Every similarity measure beside CKA, layer by layer: debiased and RBF CKA, Procrustes, CCA, "
            + "SVCCA, PWCCA, mutual k-NN, RSA.",
        discussion: "Each measure equals a peer's own code (docs/reference.md, \"vitlens similarity\"). Covariance "
            + "measures (cka-debiased, procrustes, cca, svcca, pwcca) stream float64 sums over minibatches (memory "
            + "independent of N; --shard and merge); rbf-cka, mknn and rsa use every image's vector at once, kept "
            + "in a scratch file in $TMPDIR (rsa there also keeps each layer's RDM: 4·N² bytes). Writes "
            + "similarity.csv (measure,layer_a,layer_b,value,ci_low,ci_high), best_match.csv, similarity.json, a "
            + "heatmap per measure, similarity_grid, best_match .png/.svg and index.html.")

    @Argument(help: ArgumentHelp(
        "Checkpoints or Hugging Face folders, or features computed elsewhere (.npy [L, N, T, D] or [L, N, D], or a "
        + "vitlens extract folder): A (rows), B (columns; omitted: A against itself), or three or more (every pair)."))
    var checkpoints: [String]
    @OptionGroup var model: ModelOptions
    @Option(name: .customLong("prefix-tokens"),
        help: "Leading class/register tokens of every 4-D .npy feature array.") var prefixTokens: Int?
    @OptionGroup var imageOptions: ImageOptions
    @OptionGroup var output: OutputOptions
    @Option(help: ArgumentHelp(
        "Comma-separated: all, or any of \(SimilarityMeasure.allCases.map(\.rawValue).joined(separator: ", ")).",
        valueName: "list"))
    var measures = "all"
    @Option(help: ArgumentHelp(
        "mean (of the patch tokens, one vector per image), cls, or patches (every patch token a sample: covariance "
        + "measures only; cka takes the flattened patch tokens, as vitlens cka)."))
    var tokens: TokenSelection = .mean
    @OptionGroup var representation: RepresentationOptions
    var rep: RepresentationKind { representation.rep }
    @Option(help: ArgumentHelp("Representations compared on every side, e.g. 1-12 or 0,4,8 (default: all).",
                               valueName: "list"))
    var layers: String?
    @Option(help: "Neighbours of mknn.") var knn = 10
    @Option(name: .customLong("clamp-quantile"),
        help: "mknn: clip absolute values at this quantile first, as platonic-rep's remove_outliers (default: off).")
    var clampQuantile: Double?
    @Option(name: .customLong("rbf-t"), help: "rbf-cka: σ² = t²·median squared distance.") var rbfT = 0.5
    @Option(name: .customLong("rsa-compare"), help: "rsa: spearman, kendall-tau-a, pearson or cosine.")
    var rsaCompare: RDMComparison = .spearman
    @Option(name: .customLong("svcca-keep"), help: "svcca: share of each side's variance the kept directions hold.")
    var svccaKeep = 0.99
    @Option(parsing: .unconditional, help: ArgumentHelp(
        "Percentile-bootstrap resamples of the images for 95% intervals of every measure (cka: over minibatches, as "
        + "vitlens cka); each resample costs about one more computation of the measures; 0: none."))
    var bootstrap = 0
    @OptionGroup var sharding: ShardOptions
    var shard: ShardSpec? { (try? sharding.resolved()) ?? nil }
    @OptionGroup var figures: FigureOptions
    @OptionGroup var colors: ColorRangeOptions

    var measureList: [SimilarityMeasure] {
        get throws {
            let words = measures.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            if words == ["all"] { return SimilarityMeasure.allCases }
            return try words.map { w in
                guard let m = SimilarityMeasure(rawValue: w) else {
                    throw ValidationError("--measures: '\(w)' is not a measure (all, "
                        + SimilarityMeasure.allCases.map(\.rawValue).joined(separator: ", ") + ")")
                }
                return m
            }
        }
    }

    var layerList: [Int]? {
        get throws {
            guard let layers else { return nil }
            var out: [Int] = []
            for part in layers.split(separator: ",") {
                let ends = part.split(separator: "-", omittingEmptySubsequences: false).map {
                    Int($0.trimmingCharacters(in: .whitespaces)) }
                if ends.count == 1, let a = ends[0], a >= 0 { out.append(a) }
                else if ends.count == 2, let a = ends[0], let b = ends[1], a >= 0, b >= a { out += Array(a...b) }
                else { throw ValidationError("--layers: '\(part)' is not a layer or a range a-b") }
            }
            guard Set(out).count == out.count else { throw ValidationError("--layers names a layer twice") }
            return out
        }
    }

    func validate() throws {
        if checkpoints.isEmpty { throw ValidationError("give one checkpoint or more") }
        try model.validate(models: checkpoints.count)
        _ = try measureList
        _ = try layerList
        if checkpoints.count > 2 && shard != nil {
            throw ValidationError("--shard takes one or two models; shard each pair's run") }
        if knn < 1 { throw ValidationError("--knn must be at least 1") }
        if let q = clampQuantile, !(q > 0 && q <= 1) { throw ValidationError("--clamp-quantile must be in (0, 1]") }
        if !(rbfT > 0) || !rbfT.isFinite { throw ValidationError("--rbf-t must be positive") }
        if !(svccaKeep > 0 && svccaKeep <= 1) { throw ValidationError("--svcca-keep must be in (0, 1]") }
        if bootstrap < 0 || bootstrap > 100_000 { throw ValidationError("--bootstrap must be between 0 and 100000") }
        if (try measureList).contains(.cka) && imageOptions.decoding.batch < 4 {
            throw ValidationError("--batch must be at least 4 for the cka measure (the unbiased HSIC needs b ≥ 4)") }
        if imageOptions.num < 4 { throw ValidationError("--num must be at least 4") }
        if let prefixTokens, prefixTokens < 0 { throw ValidationError("--prefix-tokens must be at least 0") }
    }

    func run() throws {
        model.applyThreads()
        let terminal = Terminal(quiet: output.quiet)
        let sides = try checkpoints.enumerated().map { i, path -> CKASide in
            if isFeatures(path) {
                do { return .array(try FeatureFile(path: path, prefixTokens: prefixTokens, name: model.names?.list[i])) }
                catch LensError.prefixTokensNeeded {
                    throw UsageError("\(path): a 4-D feature array needs --prefix-tokens K")
                }
            }
            return .model(try load(model.request(path, i), terminal))
        }
        let firstModel = sides.lazy.compactMap { side -> AnalysisModel? in if case let .model(m) = side { return m }; return nil }.first
        let images = try firstModel.map { try imageOptions.batches(size: $0.config.imageSize, terminal) }
        let settings = SimilaritySettings(
            measures: try measureList, tokens: tokens, rep: rep, layers: try layerList,
            gram: GramSettings(knn: knn, clampQuantile: clampQuantile, rbfT: rbfT, rsaCompare: rsaCompare),
            svccaKeep: svccaKeep, bootstrap: bootstrap)
        let job: SimilarityRun
        do {
            job = try comparing {
                try SimilarityRun(sides: sides, images: images, folder: imageOptions.folder,
                                  batch: imageOptions.decoding.batch, settings: settings, shard: shard)
            }
        } catch let e as SimilarityRunError where e.usage { throw UsageError(e.description) }
        let context = RunContext(commandLine: commandLine, observer: terminal)
        let (dir, files) = try writingReport(
            output.out, default: "reports/similarity-" + sides.map(\.name).joined(separator: "-"),
            command: shard == nil ? "similarity" : "similarity shard", terminal) { out in
            switch try job.run(context) {
            case let .partial(p): return try p.write(to: out, commandLine: commandLine)
            case let .report(r):
                return try r.write(to: out) + r.draw(into: out, style: figureStyle(figures, colors: colors), terminal)
            }
        }
        terminal.wrote(dir, files)
    }
}
