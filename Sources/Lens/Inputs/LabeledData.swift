import Foundation
import Images
import Train

/// Where a probe's or fine-tuning's labelled images come from.
public struct LabeledData {
    public enum Source {
        /// An ImageFolder pair (DIR/<class>/<image>): train and test with the same class names.
        case folders(train: String, test: String)
        /// One ImageFolder, a seeded stratified hold-out of `fraction` of each class as test.
        case split(train: String, fraction: Double, seed: UInt64)
        /// The CIFAR-10 / CIFAR-100 binary distribution in a folder.
        case cifar(String, CIFARKind)
    }
    public var source: Source
    public var limitTrain: Int?
    public var limitTest: Int?

    public init(source: Source, limitTrain: Int? = nil, limitTest: Int? = nil) {
        self.source = source
        self.limitTrain = limitTrain
        self.limitTest = limitTest
    }

    /// The train and test sets, and their description for the report.
    public func load() throws -> (train: LabeledImages, test: LabeledImages, json: JSONValue) {
        var tr: LabeledImages, te: LabeledImages
        var fields: [(String, JSONValue)]
        switch source {
        case let .cifar(dir, kind):
            tr = try cifarDataset(dir, kind: kind, train: true)
            te = try cifarDataset(dir, kind: kind, train: false)
            fields = [("kind", .string(kind.rawValue))]
        case let .split(dir, fraction, seed):
            (tr, te) = try stratifiedSplit(try imageFolderDataset(dir), testFraction: fraction, seed: seed)
            fields = [("kind", "ImageFolder, split")]
        case let .folders(train, test):
            tr = try imageFolderDataset(train)
            te = try aligned(test: try imageFolderDataset(test), to: tr)
            fields = [("kind", "ImageFolder")]
        }
        if let n = limitTrain { tr = tr.balancedPrefix(n) }
        if let n = limitTest { te = te.balancedPrefix(n) }
        if let empty = tr.classCounts.firstIndex(of: 0) {
            throw ImageError.folder(path: tr.source, reason: "class '\(tr.classes[empty])' has no train images (a class-balanced limit needs at least \(tr.classes.count), one per class)")
        }
        func setJSON(_ s: LabeledImages) -> JSONValue {
            .object([("source", .string(s.source)), ("count", .int(s.count)),
                     ("per_class", .array(s.classCounts.map { .int($0) })), ("images", imagesJSON(s.items.map(\.name), folder: s.source))])
        }
        fields.append(("classes", .array(tr.classes.map { .string($0) })))
        if case let .split(_, fraction, seed) = source { fields += [("split", .double(fraction)), ("seed", .int(Int(truncatingIfNeeded: seed)))] }
        fields += [("train", setJSON(tr)), ("test", setJSON(te))]
        return (tr, te, .object(fields))
    }
}

extension FineTuneSettings {
    /// The recipe as reports record it.
    public var json: JSONValue {
        .object([("epochs", .int(epochs)), ("learning_rate", .double(learningRate)), ("min_learning_rate", .double(minLearningRate)),
                 ("warmup_epochs", .double(warmupEpochs)), ("weight_decay", .double(weightDecay)), ("layer_decay", .double(layerDecay)),
                 ("train_batch", .int(batch)), ("optimizer", "AdamW (β 0.9, 0.999, ε 1e-8), decoupled decay on weight matrices"),
                 ("schedule", "linear warm-up, then cosine to min_learning_rate, per step")])
    }
}

func epochsJSON(_ logs: [EpochLog]) -> JSONValue {
    .array(logs.map { .object([("epoch", .int($0.epoch)), ("mean_loss", .double($0.meanLoss)), ("train_accuracy_running", .double($0.trainAccuracy)),
                               ("learning_rate", .double($0.learningRate)), ("seconds", .double(($0.seconds * 100).rounded() / 100))]) })
}
