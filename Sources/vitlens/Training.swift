import ArgumentParser
import Foundation
import Images
import Render
import Train
import VitLensCore

/// Fine-tuning hyper-parameters on the command line (defaults: mae-lite's recipe where it applies).
struct FineTuneOptions: ParsableArguments {
    @Option(help: "Fine-tuning epochs.")
    var epochs: Int = 10
    @Option(help: "Peak learning rate (AdamW), reached after the warm-up.")
    var lr: Double = 1e-3
    @Option(name: .customLong("min-lr"), help: "Learning rate at the end of the cosine schedule.")
    var minLR: Double = 1e-6
    @Option(name: .customLong("warmup-epochs"), help: "Linear warm-up, in epochs (fractions allowed).")
    var warmupEpochs: Double = 1
    @Option(name: .customLong("weight-decay"), help: "AdamW decoupled weight decay (weight matrices only).")
    var weightDecay: Double = 0.05
    @Option(name: .customLong("layer-decay"), help: "Layer-wise learning-rate decay (mae-lite: 0.75).")
    var layerDecay: Double = 0.75
    @Option(name: .customLong("train-batch"), help: "Images per training step.")
    var trainBatch: Int = 32

    func validate() throws {
        if epochs < 1 { throw ValidationError("--epochs must be at least 1") }
        if trainBatch < 1 || trainBatch > 1024 { throw ValidationError("--train-batch must be between 1 and 1024") }
        for (n, v) in [("--lr", lr), ("--min-lr", minLR), ("--warmup-epochs", warmupEpochs), ("--weight-decay", weightDecay)] {
            if !(v >= 0 && v.isFinite) { throw ValidationError("\(n) must be a non-negative number") }
        }
        if !(layerDecay > 0 && layerDecay <= 1) { throw ValidationError("--layer-decay must be in (0, 1]") }
    }

    func settings(seed: UInt64, pooling: ProbePooling) -> FineTuneSettings {
        var s = FineTuneSettings()
        s.epochs = epochs; s.batch = trainBatch; s.learningRate = lr; s.minLearningRate = minLR
        s.warmupEpochs = min(warmupEpochs, Double(epochs)); s.weightDecay = weightDecay; s.layerDecay = layerDecay
        s.seed = seed; s.pooling = pooling
        return s
    }

    var json: JSONValue {
        .object([("epochs", .int(epochs)), ("learning_rate", .double(lr)), ("min_learning_rate", .double(minLR)),
                 ("warmup_epochs", .double(warmupEpochs)), ("weight_decay", .double(weightDecay)), ("layer_decay", .double(layerDecay)),
                 ("train_batch", .int(trainBatch)), ("optimizer", "AdamW (β 0.9, 0.999, ε 1e-8), decoupled decay on weight matrices"),
                 ("schedule", "linear warm-up, then cosine to min_learning_rate, per step")])
    }
}

/// `--layers 3,6,12`.
struct LayerList: ExpressibleByArgument {
    let list: [Int]
    init?(argument: String) {
        let parts = argument.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ ($0 ?? 0) >= 1 }) else { return nil }
        list = parts.compactMap { $0 }
    }
    func values(depth: Int) throws -> [Int] {
        if let bad = list.first(where: { $0 > depth }) { throw ValidationError("--layers \(bad): the model has \(depth) blocks") }
        return Array(Set(list)).sorted()
    }
}

func epochsJSON(_ logs: [EpochLog]) -> JSONValue {
    .array(logs.map { .object([("epoch", .int($0.epoch)), ("mean_loss", .double($0.meanLoss)), ("train_accuracy_running", .double($0.trainAccuracy)),
                               ("learning_rate", .double($0.learningRate)), ("seconds", .double(($0.seconds * 100).rounded() / 100))]) })
}

/// Normalised images of a list of items by index, for training: decoded once and kept in memory
/// when they fit in 1 GB, decoded per batch otherwise.
final class ImageLoader {
    let items: [ImageItem]
    let size: Int
    let mode: ResizeMode
    private var cache: Tensor?
    private var cached: [Bool]

    init(items: [ImageItem], size: Int, mode: ResizeMode) {
        self.items = items
        self.size = size
        self.mode = mode
        cached = [Bool](repeating: false, count: items.count)
        if items.count * 3 * size * size * 4 <= 1 << 30 { cache = Tensor(shape: [items.count, 3, size, size]) }
    }

    func load(_ indices: [Int]) throws -> Tensor {
        let plane = 3 * size * size
        let out = Tensor(shape: [indices.count, 3, size, size])
        let missing = indices.filter { cache == nil || !cached[$0] }
        if !missing.isEmpty {
            let t = Tensor(shape: [missing.count, 3, size, size])
            let errors = loadBatch(items: missing.map { items[$0] }, size: size, mode: mode, into: t)
            if let e = errors.compactMap({ $0 }).first { throw e }
            if let cache {
                for (k, i) in missing.enumerated() { (cache.data + i * plane).update(from: t.data + k * plane, count: plane); cached[i] = true }
            } else {
                for (k, _) in missing.enumerated() { (out.data + k * plane).update(from: t.data + k * plane, count: plane) }
                return out
            }
        }
        if let cache { for (k, i) in indices.enumerated() { (out.data + k * plane).update(from: cache.data + i * plane, count: plane) } }
        return out
    }
}
