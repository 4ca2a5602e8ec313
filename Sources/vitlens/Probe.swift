import ArgumentParser
import Engine
import Foundation
import Images
import Render
import Train
import VitLensCore

extension ProbePooling: ExpressibleByArgument {}

/// Where the labelled images come from: an ImageFolder pair, one folder split, or CIFAR.
struct DatasetOptions: ParsableArguments {
    @Option(help: "Train images, ImageFolder layout (DIR/<class>/<image>).")
    var train: String?
    @Option(help: "Test images, same class folder names as --train.")
    var test: String?
    @Option(help: "Instead of --test: hold out this fraction of each --train class (seeded, stratified).")
    var split: Double?
    @Option(help: "Seed of --split.")
    var seed: UInt64 = 0
    @Option(name: .customLong("cifar10"), help: "CIFAR-10 binary folder (data_batch_*.bin, test_batch.bin).")
    var cifar10: String?
    @Option(name: .customLong("cifar100"), help: "CIFAR-100 binary folder (train.bin, test.bin).")
    var cifar100: String?
    @Option(name: .customLong("limit-train"), help: "Use at most N train images, balanced over the classes.")
    var limitTrain: Int?
    @Option(name: .customLong("limit-test"), help: "Use at most N test images, balanced over the classes.")
    var limitTest: Int?

    func validate() throws {
        let sources = [train, cifar10, cifar100].compactMap { $0 }.count
        if sources != 1 { throw ValidationError("give exactly one of --train DIR, --cifar10 DIR, --cifar100 DIR") }
        if train != nil && (test == nil) == (split == nil) { throw ValidationError("with --train give either --test DIR or --split FRACTION") }
        if train == nil && (test != nil || split != nil) { throw ValidationError("--test and --split go with --train") }
        if let split, !(split > 0 && split < 1) { throw ValidationError("--split must be between 0 and 1 (exclusive)") }
        for (n, v) in [("--limit-train", limitTrain), ("--limit-test", limitTest)] { if let v, v < 1 { throw ValidationError("\(n) must be at least 1") } }
    }

    func load() throws -> (train: LabeledImages, test: LabeledImages, json: JSONValue) {
        var tr: LabeledImages, te: LabeledImages
        var kind: String
        if let dir = cifar10 ?? cifar100 {
            let k: CIFARKind = cifar10 != nil ? .cifar10 : .cifar100
            tr = try cifarDataset(dir, kind: k, train: true)
            te = try cifarDataset(dir, kind: k, train: false)
            kind = k.rawValue
        } else if let t = train, let s = split {
            (tr, te) = try stratifiedSplit(try imageFolderDataset(t), testFraction: s, seed: seed)
            kind = "ImageFolder, split"
        } else if let t = train, let v = test {
            tr = try imageFolderDataset(t)
            te = try aligned(test: try imageFolderDataset(v), to: tr)
            kind = "ImageFolder"
        } else {
            throw ValidationError("no dataset")
        }
        if let n = limitTrain { tr = tr.balancedPrefix(n) }
        if let n = limitTest { te = te.balancedPrefix(n) }
        if let empty = tr.classCounts.firstIndex(of: 0) {
            throw ImageError.folder(path: tr.source, reason: "class '\(tr.classes[empty])' has no train images (raise --limit-train to at least \(tr.classes.count))")
        }
        func setJSON(_ s: LabeledImages) -> JSONValue {
            .object([("source", .string(s.source)), ("count", .int(s.count)),
                     ("per_class", .array(s.classCounts.map { .int($0) })), ("images", imagesJSON(s.items.map(\.name), folder: s.source))])
        }
        var fields: [(String, JSONValue)] = [("kind", .string(kind)), ("classes", .array(tr.classes.map { .string($0) }))]
        if let split { fields += [("split", .double(split)), ("seed", .int(Int(truncatingIfNeeded: seed)))] }
        fields += [("train", setJSON(tr)), ("test", setJSON(te))]
        return (tr, te, .object(fields))
    }
}

struct Probe: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Layer-truncation transfer probe: keep the first k blocks, measure downstream accuracy for every k (SPEC §7).",
        discussion: """
        One forward pass per model caches, for every k = 1…L, the output of block k with the model's
        final norm applied to every token, mean-pooled over the patch tokens (--pool cls: the class
        token). Features are standardised with the train statistics and a multinomial logistic
        regression with L2 (scikit-learn's default C = 1) is fitted to convergence by L-BFGS.
        Several models share the image decoding. Writes probe.csv, probe.json, probe.png/.svg, index.html.
        """)

    @Argument(help: "Checkpoints (files or Hugging Face folders); several are compared in one figure.")
    var checkpoints: [String]
    @OptionGroup var dataset: DatasetOptions
    @Option(help: "Heads: one value for every model, or one per model in order.")
    var heads: [Int] = []
    @Option(name: .customLong("image-size"), help: "Run every model at this image size.")
    var imageSize: Int?
    @Option(help: "Threads (default: all cores).")
    var threads: Int?
    @OptionGroup var decoding: DecodeOptions
    var batch: Int { decoding.batch }
    var resize: ResizeMode { decoding.resize }
    var skipBadImages: Bool { decoding.skipBadImages }
    @Option(help: "mean (of the patch tokens) or cls (the class token), after the final norm.")
    var pool: ProbePooling = .mean
    @Option(name: .customLong("max-iter"), help: "L-BFGS iteration limit per depth.")
    var maxIter: Int = 2000
    @Flag(help: "Fine-tune instead: for each k keep blocks 0…k−1 plus a new linear head and train end to end (AdamW).")
    var finetune = false
    @Option(help: "With --finetune: the depths k to train, e.g. 3,6,12 (default: every k).")
    var layers: LayerList?
    @OptionGroup var training: FineTuneOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var figures: FigureOptions

    func validate() throws {
        if checkpoints.isEmpty { throw ValidationError("give at least one checkpoint") }
        if !heads.isEmpty && heads.count != 1 && heads.count != checkpoints.count {
            throw ValidationError("--heads: give one value, or one per checkpoint (\(checkpoints.count))")
        }
        if heads.contains(where: { $0 < 1 }) { throw ValidationError("--heads must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if let imageSize, imageSize < 1 || imageSize > 4096 { throw ValidationError("--image-size must be between 1 and 4096") }
        if maxIter < 1 { throw ValidationError("--max-iter must be at least 1") }
        if finetune && skipBadImages { throw ValidationError("--skip-bad-images does not go with --finetune (training needs every listed image)") }
        if layers != nil && !finetune { throw ValidationError("--layers goes with --finetune (the linear probe always fits every k from one pass)") }
    }

    func run() throws {
        if let threads { BLASRuntime.setThreads(threads); Workers.count = threads }
        let (train, test, datasetJSON) = try dataset.load()
        var models: [LoadedModel] = []
        for (i, path) in checkpoints.enumerated() {
            let h = heads.isEmpty ? nil : heads.count == 1 ? heads[0] : heads[i]
            models.append(try loadModel(path, heads: h, imageSize: imageSize ?? models.first?.config.imageSize, quiet: output.quiet))
        }
        let names = models.map(\.name)
        if Set(names).count != names.count { throw ValidationError("two checkpoints have the same name (\(names.joined(separator: ", "))); rename one") }
        let outDir = try OutputDirectory(output.out ?? "reports/probe-" + names.joined(separator: "-"))
        defer { outDir.discard() }

        // One stream of train then test images; every model runs on each decoded batch.
        let items = train.items + test.items
        let stream = ImageStream(items: items, size: models[0].config.imageSize, mode: resize, batch: batch, skipBad: skipBadImages)
        let taps = models.map { ProbeFeatureTaps(engine: $0.engine, pooling: pool) }
        var kept: [Int] = []
        if finetune {
            kept = Array(0..<items.count)  // training decodes its own batches; an unreadable image is an error
        } else {
            let progress = Progress("probe", total: items.count, quiet: output.quiet)
            try stream.forEachKept(batches: Array(0..<stream.batchCount)) { index, x, k in
                if x.shape[0] > 0 { for (m, t) in zip(models, taps) { try m.run(x, taps: t, batch: index) } }
                kept += k
                progress.update(min(items.count, (index + 1) * batch))
            }
            progress.finish()
        }
        let labels = train.labels + test.labels
        let trainRows = kept.indices.filter { kept[$0] < train.count }, testRows = kept.indices.filter { kept[$0] >= train.count }
        let trainLabels = trainRows.map { labels[kept[$0]] }, testLabels = testRows.map { labels[kept[$0]] }
        guard Set(trainLabels).count >= 2 else { throw ImageError.folder(path: train.source, reason: "fewer than 2 classes have readable train images") }

        let results = finetune
            ? try fineTuneResults(models, train: train, test: test, trainRows: trainRows.map { kept[$0] }, testRows: testRows.map { kept[$0] - train.count })
            : linearResults(models, taps: taps, trainRows: trainRows, testRows: testRows, trainLabels: trainLabels, testLabels: testLabels, classes: train.classes.count)

        var csv = CSVTable(header: (models.count > 1 ? ["model"] : []) + ["layers_kept", "train_accuracy", "test_accuracy"])
        for (name, rows) in results {
            for r in rows { csv.append((models.count > 1 ? [name] : []) + ["\(r.layersKept)", csvNumber(r.train), csvNumber(r.test)]) }
        }
        try outDir.write("probe.csv", csv.render())
        let counts = testLabels.reduce(into: [Int: Int]()) { $0[$1, default: 0] += 1 }
        let json = JSONValue.object([
            ("vitlens_version", .string(vitlensVersion)), ("command_line", .string(CommandLine.arguments.joined(separator: " "))),
            ("setup", .object([
                ("command", "probe"), ("models", .array(models.map(modelJSON))), ("dataset", datasetJSON),
                ("definitions", .object([
                    ("mode", .string(finetune ? "finetune" : "linear")),
                    ("features", .string("output of block k (k = 1…L kept), the model's final norm on every token, then \(pool == .mean ? "the mean of the patch tokens" : "the class token")")),
                    ("pool", .string(pool.rawValue)),
                ] + (finetune ? [
                    ("training", .string("blocks 0…k−1, final norm, pooling and a new linear head (trunc. normal σ 2e−5) trained end to end on the train set: cross-entropy, AdamW, warm-up then cosine per step, layer-wise lr decay; no augmentation; images in the eval transform")),
                    ("settings", training.json),
                    ("train_accuracy", "accuracy of the trained model on the train set (a forward pass after training)"),
                ] : [
                    ("standardise", "train mean and population standard deviation per feature (scikit-learn StandardScaler); constant features scale 1"),
                    ("classifier", "multinomial logistic regression (binary for 2 classes), L2 on the weights, C = 1 (scikit-learn's default): (1/N)·Σ cross-entropy + ‖W‖²/(2CN)"),
                    ("solver", .string("L-BFGS in float64 until max|gradient| ≤ 1e-7 (at most \(maxIter) iterations)")),
                ] as [(String, JSONValue)]) + [
                    ("batch", .int(batch)), ("resize", .string(resize.rawValue)), ("image_size", .int(models[0].config.imageSize)),
                    ("skip_bad_images", .bool(skipBadImages)),
                ] as [(String, JSONValue)])),
            ])),
            ("images_used", .object([("train", .int(trainRows.count)), ("test", .int(testRows.count))])),
            ("chance_accuracy", .double(Double(counts.values.max() ?? 0) / Double(max(1, testLabels.count)))),
            ("results", .array(results.map { name, rows in
                .object([("model", .string(name)), ("layers", .array(rows.map { r in
                    .object([("layers_kept", .int(r.layersKept)), ("train_accuracy", .double(r.train)), ("test_accuracy", .double(r.test))] + r.extra)
                }))])
            })),
        ])
        try outDir.write("probe.json", json.render() + "\n")
        let files = ["probe.csv", "probe.json"] + (try ReportFigures.render(sourceDir: outDir.stagingPath, out: outDir, style: FigureStyle(scale: figures.scale)))
        try outDir.commit()
        if !output.quiet {
            for (name, rows) in results {
                let best = rows.max { $0.test < $1.test }!
                FileHandle.standardError.write(Data("\(name): best test accuracy \(String(format: "%.4f", best.test)) keeping \(best.layersKept) blocks\n".utf8))
            }
            FileHandle.standardError.write(Data("wrote \(outDir.finalPath)/{\(files.joined(separator: ", "))}\n".utf8))
        }
    }

    /// The linear probe of every depth from the cached features.
    func linearResults(_ models: [LoadedModel], taps: [ProbeFeatureTaps], trainRows: [Int], testRows: [Int],
                       trainLabels: [Int], testLabels: [Int], classes: Int) -> [(String, [ProbeRow])] {
        var results: [(String, [ProbeRow])] = []
        for (m, t) in zip(models, taps) {
            let C = m.config.dim
            var rows: [ProbeRow] = []
            for k in 1...m.config.depth {
                let f = t.features[k - 1]
                func gather(_ r: [Int]) -> [Float] { var o = [Float](); o.reserveCapacity(r.count * C); for i in r { o += f[(i * C)..<((i + 1) * C)] }; return o }
                let res = linearProbe(train: gather(trainRows), trainLabels: trainLabels, test: gather(testRows), testLabels: testLabels,
                                      dim: C, classes: classes, layersKept: k, maxIterations: maxIter)
                if !res.solver.converged && !output.quiet {
                    warning("\(m.name), k = \(k): L-BFGS stopped after \(res.solver.iterations) iterations with max|∇| = \(String(format: "%.2g", res.solver.gradientMax)) (raise --max-iter)")
                }
                rows.append(ProbeRow(layersKept: k, train: res.trainAccuracy, test: res.testAccuracy, extra: [
                    ("solver_iterations", .int(res.solver.iterations)), ("converged", .bool(res.solver.converged)),
                    ("gradient_max", .double(res.solver.gradientMax))]))
            }
            results.append((m.name, rows))
        }
        return results
    }

    /// --finetune: for each depth, train a truncated copy end to end and score it.
    func fineTuneResults(_ models: [LoadedModel], train: LabeledImages, test: LabeledImages, trainRows: [Int], testRows: [Int]) throws -> [(String, [ProbeRow])] {
        let trainSet = train.subset(trainRows), testSet = test.subset(testRows)
        let size = models[0].config.imageSize
        let trainLoader = ImageLoader(items: trainSet.items, size: size, mode: resize), testLoader = ImageLoader(items: testSet.items, size: size, mode: resize)
        var results: [(String, [ProbeRow])] = []
        for m in models {
            let depths = try layers?.values(depth: m.config.depth) ?? Array(1...m.config.depth)
            var rows: [ProbeRow] = []
            for k in depths {
                let s = training.settings(seed: dataset.seed, pooling: pool)
                let model = TrainableViT(weights: m.engine.weights, keep: k, classes: train.classes.count, pooling: pool, seed: s.seed)
                let progress = Progress("\(m.name) k=\(k)", total: s.epochs * trainSet.count, quiet: output.quiet)
                let logs = try fineTune(model, labels: trainSet.labels, settings: s, load: trainLoader.load,
                                        onStep: { step, _ in progress.update(min(s.epochs * trainSet.count, step * s.batch)) })
                progress.finish()
                let trainAcc = try evaluate(model, labels: trainSet.labels, batch: batch, load: trainLoader.load)
                let testAcc = try evaluate(model, labels: testSet.labels, batch: batch, load: testLoader.load)
                if !output.quiet {
                    notice("\(m.name), k = \(k): loss \(String(format: "%.4f", logs.first?.meanLoss ?? .nan)) → \(String(format: "%.4f", logs.last?.meanLoss ?? .nan)), test accuracy \(String(format: "%.4f", testAcc))")
                }
                rows.append(ProbeRow(layersKept: k, train: trainAcc, test: testAcc, extra: [("epochs", epochsJSON(logs))]))
            }
            results.append((m.name, rows))
        }
        return results
    }
}

/// One depth's accuracies and what produced them.
struct ProbeRow {
    var layersKept: Int
    var train: Double
    var test: Double
    var extra: [(String, JSONValue)]
}
