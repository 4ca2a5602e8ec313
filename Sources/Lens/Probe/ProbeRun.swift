import Analysis
import Engine
import Foundation
import Images
import Train
import VitLensCore

/// The layer-truncation probe of one or more models on one labelled dataset: for every k, the
/// first k blocks' features and a linear classifier (or, `fineTune`, the first k blocks trained
/// end to end with a new head).
public struct ProbeRun {
    public let models: [AnalysisModel]
    public let train: LabeledImages, test: LabeledImages
    public let dataset: DatasetRecord
    public var batch: Int
    public var resize: ResizeMode
    public var skipBad: Bool
    public var pool: ProbePooling
    public var maxIterations: Int
    /// Fine-tune instead of the linear probe, with these settings, at these depths (nil: every k).
    public var fineTune: FineTuneSettings?
    public var depths: [Int]?

    public init(
        models: [AnalysisModel], data: (train: LabeledImages, test: LabeledImages, record: DatasetRecord), batch: Int,
                resize: ResizeMode, skipBad: Bool, pool: ProbePooling, maxIterations: Int,
                fineTune: FineTuneSettings? = nil, depths: [Int]? = nil) throws {
        let names = models.map(\.name)
        guard Set(names).count == names.count else {
            throw LensError.sameNames(names)
        }
        if pool == .cls, let m = models.first(where: { !$0.config.classToken }) {
            throw LensError.noClassToken(path: m.request.path, option: "--pool cls")
        }
        if let depths, let m = models.first(where: { $0.config.depth < (depths.max() ?? 0) }) {
            throw LensError.tooFewBlocks(path: m.request.path, depth: m.config.depth, keep: depths.max() ?? 0)
        }
        self.models = models
        (train, test, dataset) = data
        (self.batch, self.resize, self.skipBad, self.pool, self.maxIterations) = (
            batch, resize, skipBad, pool, maxIterations)
        (self.fineTune, self.depths) = (fineTune, depths)
    }

    public func run(_ context: RunContext) throws -> ProbeResult {
        let observer = context.observer
        // One listing of train then test images; every model runs on each decoded batch.
        let items = train.items + test.items
        let loader = ImageBatches(
            items: items, size: models[0].config.imageSize, mode: resize, batch: batch, skipBad: skipBad)
        loader.onSkip = { observer.warning("skipping \($0)") }
        let taps = models.map { ProbeFeatureTaps(engine: $0.engine, pooling: pool) }
        var kept: [Int] = []
        if fineTune != nil {
            kept = Array(0..<items.count)  // training decodes its own batches; an unreadable image is an error
        } else {
            let driver = BatchDriver(images: loader, count: items.count, batch: batch, label: "probe")
            try driver.run(zip(models, taps).map { ModelSource($0, taps: $1) }, context) { kept += $0.kept }
        }
        let labels = train.labels + test.labels
        let trainRows = kept.indices.filter { kept[$0] < train.count },
            testRows = kept.indices.filter { kept[$0] >= train.count }
        let trainLabels = trainRows.map { labels[kept[$0]] }, testLabels = testRows.map { labels[kept[$0]] }
        guard Set(trainLabels).count >= 2 else {
            throw ImageError.folder(path: train.source, reason: "fewer than 2 classes have readable train images") }

        let results: [(String, [ProbeResult.Row])]
        if let settings = fineTune {
            results = try fineTuneResults(
                settings, trainRows: trainRows.map { kept[$0] }, testRows: testRows.map { kept[$0] - train.count },
                observer)
        } else {
            results = linearResults(
                taps, trainRows: trainRows, testRows: testRows, trainLabels: trainLabels, testLabels: testLabels,
                observer)
        }
        let counts = testLabels.reduce(into: [Int: Int]()) { $0[$1, default: 0] += 1 }
        let definitions = ProbeSetup.Definitions(
            method: fineTune.map { .finetune($0) } ?? .linear(maxIterations: maxIterations), pool: pool, batch: batch,
            resize: resize.rawValue, imageSize: models[0].config.imageSize, skipBadImages: skipBad)
        let setup = ProbeSetup(models: models.map(\.record), dataset: dataset, definitions: definitions)
        let chance = Double(counts.values.max() ?? 0) / Double(max(1, testLabels.count))
        let json = JSONValue.object(context.run.fields + [
            ("setup", setup.json),
            ("images_used", .object([("train", .int(trainRows.count)), ("test", .int(testRows.count))])),
            ("chance_accuracy", .double(chance)),
            ("results", .array(results.map { name, rows in
                .object([("model", .string(name)), ("layers", .array(rows.map { r in
                    let ci = wilsonInterval(
                        correct: Int((r.test * Double(testRows.count)).rounded()), of: testRows.count)
                    return .object(
                        [("layers_kept", .int(r.layersKept)), ("train_accuracy", .double(r.train)),
                        ("test_accuracy", .double(r.test)),
                                    ("test_accuracy_ci", .doubles([ci.low, ci.high]))] + r.extra)
                }))])
            })),
        ])
        return ProbeResult(models: results.map { ($0.0, $0.1.map {
            var row = ProbeResult.Row(
                layersKept: $0.layersKept, train: tabled($0.train), test: tabled($0.test), testImages: testRows.count)
            (row.testLow, row.testHigh) = (tabled(row.testLow), tabled(row.testHigh))
            return row
        }) }, json: json, modelColumn: models.count > 1)
            .with(setup: setup, imagesUsed: (trainRows.count, testRows.count), chance: chance)
    }

    /// The linear probe of every depth from the cached features.
    func linearResults(
        _ taps: [ProbeFeatureTaps], trainRows: [Int], testRows: [Int], trainLabels: [Int], testLabels: [Int],
                       _ observer: RunObserver) -> [(String, [ProbeResult.Row])] {
        zip(models, taps).map { m, t in
            let C = m.config.dim
            let rows = (1...m.config.depth).map { k -> ProbeResult.Row in
                let f = t.features[k - 1]
                func gather(_ r: [Int]) -> [Float] {
                    var o = [Float](); o.reserveCapacity(r.count * C); for i in r {
                    o += f[(i * C)..<((i + 1) * C)] }; return o }
                let res = linearProbe(
                    train: gather(trainRows), trainLabels: trainLabels, test: gather(testRows), testLabels: testLabels,
                                      dim: C, classes: train.classes.count, layersKept: k, maxIterations: maxIterations)
                if !res.solver.converged {
                    observer.warning(
                        "\(m.name), k = \(k): L-BFGS stopped after \(res.solver.iterations) iterations with max|∇| "
                        + "= \(String(format: "%.2g", res.solver.gradientMax)) (raise the iteration limit)")
                }
                return ProbeResult.Row(layersKept: k, train: res.trainAccuracy, test: res.testAccuracy, extra: [
                    ("solver_iterations", .int(res.solver.iterations)), ("converged", .bool(res.solver.converged)),
                    ("gradient_max", .double(res.solver.gradientMax))])
            }
            return (m.name, rows)
        }
    }

    /// Fine-tuning: for each depth, a truncated copy trained end to end, then scored.
    func fineTuneResults(_ s: FineTuneSettings, trainRows: [Int], testRows: [Int], _ observer: RunObserver) throws -> [
        (String, [ProbeResult.Row])] {
        let trainSet = train.subset(trainRows), testSet = test.subset(testRows)
        let size = models[0].config.imageSize
        let trainImages = ImageBatches(items: trainSet.items, size: size, mode: resize, batch: batch)
        let testImages = ImageBatches(items: testSet.items, size: size, mode: resize, batch: batch)
        return try models.map { m in
            let rows = try (depths ?? Array(1...m.config.depth)).map { k -> ProbeResult.Row in
                let model = TrainableViT(
                    weights: m.engine.weights, keep: k, classes: train.classes.count, pooling: pool, seed: s.seed)
                let total = s.epochs * trainSet.count
                let logs = try Train.fineTune(
                    model, labels: trainSet.labels, settings: s, load: trainImages.images(at:),
                                              onStep: {
                                                  step, _ in observer.progress(
                                                  "\(m.name) k=\(k)", done: min(total, step * s.batch), total: total) })
                observer.progressEnded()
                let trainAcc = try evaluate(model, labels: trainSet.labels, batch: batch, load: trainImages.images(at:))
                let testAcc = try evaluate(model, labels: testSet.labels, batch: batch, load: testImages.images(at:))
                observer.notice(
                    "\(m.name), k = \(k): loss \(String(format: "%.4f", logs.first?.meanLoss ?? .nan)) → "
                    + "\(String(format: "%.4f", logs.last?.meanLoss ?? .nan)), test accuracy "
                    + "\(String(format: "%.4f", testAcc))")
                return ProbeResult.Row(
                    layersKept: k, train: trainAcc, test: testAcc, extra: [("epochs", epochsJSON(logs))])
            }
            return (m.name, rows)
        }
    }
}
