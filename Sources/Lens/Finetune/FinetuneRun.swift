import Checkpoint
import Engine
import Foundation
import Images
import Train
import VitLensCore

/// Fine-tunes a model's first k blocks with a new linear head, reports the loss per epoch and
/// the accuracies, and optionally saves the result as safetensors under timm's names.
public struct FinetuneRun {
    public let model: AnalysisModel
    public let train: LabeledImages, test: LabeledImages
    public let dataset: DatasetRecord
    public var keep: Int
    public var pool: ProbePooling
    public var resize: ResizeMode
    public var batch: Int
    public var settings: FineTuneSettings
    public var save: String?
    public var saveDType: SafetensorsWriter.DType

    public init(
        model: AnalysisModel, data: (train: LabeledImages, test: LabeledImages, record: DatasetRecord), keep: Int?,
        pool: ProbePooling,
                resize: ResizeMode, batch: Int, settings: FineTuneSettings, save: String?,
                    saveDType: SafetensorsWriter.DType) throws {
        let k = keep ?? model.config.depth
        guard k <= model.config.depth else {
            throw LensError.tooFewBlocks(path: model.request.path, depth: model.config.depth, keep: k) }
        if pool == .cls
            && !model.config.classToken { throw LensError.noClassToken(path: model.request.path, option: "--pool cls") }
        if let save {
            let dir = (save as NSString).deletingLastPathComponent
            var isDir: ObjCBool = false
            guard dir.isEmpty
                || (FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) && isDir.boolValue) else {
                throw CheckpointError.cannotWrite(path: save, reason: "no folder \(dir)")
            }
        }
        self.model = model
        (train, test, dataset) = data
        (self.keep, self.pool, self.resize, self.batch, self.settings, self.save, self.saveDType) = (
            k, pool, resize, batch, settings, save, saveDType)
    }

    public struct Result {
        public var logs: [EpochLog]
        public var trainAccuracy: Double, testAccuracy: Double, chance: Double
        public var csv: CSVTable
        public var json: JSONValue
    }

    public func run(_ context: RunContext) throws -> Result {
        let s = settings, size = model.config.imageSize, observer = context.observer
        let trainImages = ImageBatches(items: train.items, size: size, mode: resize, batch: batch)
        let testImages = ImageBatches(items: test.items, size: size, mode: resize, batch: batch)
        let net = TrainableViT(
            weights: model.engine.weights, keep: keep, classes: train.classes.count, pooling: pool, seed: s.seed)
        let total = s.epochs * train.count
        let t0 = Date()
        let logs = try fineTune(net, labels: train.labels, settings: s, load: trainImages.images(at:), onEpoch: { log in
            observer.progressEnded()
            observer.notice(String(format: "epoch %d/%d: loss %.4f, running train accuracy %.4f, lr %.2e, %.1f img/s",
                                   log.epoch, s.epochs, log.meanLoss, log.trainAccuracy, log.learningRate,
                                       Double(train.count) / max(log.seconds, 1e-9)))
        }, onStep: { step, _ in observer.progress("finetune", done: min(total, step * s.batch), total: total) })
        let trainSeconds = Date().timeIntervalSince(t0)
        var csv = CSVTable(header: ["epoch", "train_loss", "train_accuracy_running", "learning_rate", "seconds"])
        for l in logs {
            csv.append(
            ["\(l.epoch)", csvNumber(l.meanLoss), csvNumber(l.trainAccuracy), csvNumber(l.learningRate),
            String(format: "%.2f", l.seconds)]) }
        let testAcc = try evaluate(net, labels: test.labels, batch: batch, load: testImages.images(at:))
        let trainAcc = try evaluate(net, labels: train.labels, batch: batch, load: trainImages.images(at:))
        let chance = Double(test.classCounts.max() ?? 0) / Double(max(1, test.count))
        let setup = FinetuneSetup(model: model.record, dataset: dataset, layersKept: keep, pool: pool, settings: s,
                                  resize: resize.rawValue, imageSize: size)
        let json = JSONValue.object(context.run.fields + [
            ("setup", setup.json),
            ("results", .object([("train_accuracy", .double(trainAcc)), ("test_accuracy", .double(testAcc)),
                                 ("chance_accuracy", .double(chance)),
                                 ("images_per_second",
                                     .double((Double(total) / max(trainSeconds, 1e-9) * 100).rounded() / 100)),
                                 ("epochs", epochsJSON(logs)), ("saved", save.map { .string($0) } ?? .null)])),
        ])
        if let save {
            // The tensors must outlive the raw pointers handed to the writer.
            let state = net.stateDict()
            let entries = state.map { SafetensorsWriter.Entry(name: $0.0, shape: $0.1, data: UnsafePointer($0.2.data)) }
            try withExtendedLifetime(state) {
                // A rotary model's file holds no position table: its trained size goes in the metadata.
                let size = model.config.rotary != nil ? [("image_size", "\(model.config.imageSize)")] : []
                try SafetensorsWriter.write(path: save, tensors: entries, metadata: [
                    ("num_heads", "\(model.config.heads)"), ("layer_norm_eps", "\(model.config.eps)"),
                    ("hidden_act", model.config.activation.rawValue), ("family", model.config.modelFamily.rawValue),
                    ("format", "pt"),
                    ("producer", "vitlens \(vitlensVersion) finetune"), ("source", model.checkpoint.path),
                    ("source_sha256", model.sha256),
                    ("layers_kept", "\(keep)"), ("global_pool", pool == .mean ? "avg" : "token"),
                    ("classes", JSONValue.array(train.classes.map { .string($0) }).render()),
                    ("test_accuracy", "\(testAcc)"),
                ] + size, dtype: saveDType)
            }
        }
        return Result(logs: logs, trainAccuracy: trainAcc, testAccuracy: testAcc, chance: chance, csv: csv, json: json)
    }
}

/// What a finetune report records of how it was made.
public struct FinetuneSetup: JSONEncodableRecord, Equatable {
    public var model: ModelRecord
    public var dataset: DatasetRecord
    public var layersKept: Int
    public var pool: ProbePooling
    public var settings: FineTuneSettings
    public var resize: String
    public var imageSize: Int

    public var json: JSONValue {
        .object([("command", "finetune"), ("model", model.json), ("dataset", dataset.json),
                 ("definitions", .object([("layers_kept", .int(layersKept)), ("pool", .string(pool.rawValue)),
                                          ("settings", settings.json), ("resize", .string(resize)),
                                          ("image_size", .int(imageSize)),
                                          ("seed", .int(Int(truncatingIfNeeded: settings.seed)))]))])
    }
}
