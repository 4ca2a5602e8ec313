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
    public func load() throws -> (train: LabeledImages, test: LabeledImages, record: DatasetRecord) {
        var tr: LabeledImages, te: LabeledImages
        let kind: String
        switch source {
        case let .cifar(dir, k):
            tr = try cifarDataset(dir, kind: k, train: true)
            te = try cifarDataset(dir, kind: k, train: false)
            kind = k.rawValue
        case let .split(dir, fraction, seed):
            (tr, te) = try stratifiedSplit(try imageFolderDataset(dir), testFraction: fraction, seed: seed)
            kind = "ImageFolder, split"
        case let .folders(train, test):
            tr = try imageFolderDataset(train)
            te = try aligned(test: try imageFolderDataset(test), to: tr)
            kind = "ImageFolder"
        }
        if let n = limitTrain { tr = tr.balancedPrefix(n) }
        if let n = limitTest { te = te.balancedPrefix(n) }
        if let empty = tr.classCounts.firstIndex(of: 0) {
            throw ImageError.folder(path: tr.source, reason: "class '\(tr.classes[empty])' has no train images "
                + "(a class-balanced limit needs at least \(tr.classes.count), one per class)")
        }
        var record = DatasetRecord(kind: kind, classes: tr.classes, train: .init(tr), test: .init(te))
        if case let .split(_, fraction, seed) = source {
            (record.split, record.seed) = (fraction, Int(truncatingIfNeeded: seed)) }
        return (tr, te, record)
    }
}

/// A labelled dataset as probe and finetune reports record it.
public struct DatasetRecord: JSONRecord, Equatable {
    /// "ImageFolder", "ImageFolder, split", "cifar10" or "cifar100".
    public var kind: String
    public var classes: [String]
    /// The held-out fraction and seed of a split folder.
    public var split: Double?, seed: Int?
    public var train, test: SetRecord

    /// One side: where it was read from, its size per class, its images.
    public struct SetRecord: Equatable {
        public var source: String
        public var count: Int
        public var perClass: [Int]
        public var images: ImagesRecord

        init(_ s: LabeledImages) {
            (source, count, perClass) = (s.source, s.count, s.classCounts)
            images = ImagesRecord(paths: s.items.map(\.name), folder: s.source)
        }
        init(_ f: JSONFields) throws {
            (source, count, perClass) = (try f.string("source"), try f.int("count"), try f.ints("per_class"))
            images = try ImagesRecord(json: try f.raw("images"))
        }
        var json: JSONValue {
            .object([("source", .string(source)), ("count", .int(count)),
                     ("per_class", .array(perClass.map { .int($0) })), ("images", images.json)])
        }
    }

    init(kind: String, classes: [String], train: SetRecord, test: SetRecord) {
        (self.kind, self.classes, self.train, self.test) = (kind, classes, train, test)
    }

    public var json: JSONValue {
        var fields: [(String, JSONValue)] = [("kind", .string(kind)), ("classes", .array(classes.map { .string($0) }))]
        if let split, let seed { fields += [("split", .double(split)), ("seed", .int(seed))] }
        return .object(fields + [("train", train.json), ("test", test.json)])
    }

    public init(json: JSONValue) throws {
        let f = try JSONFields(json, record: "dataset")
        self.init(
            kind: try f.string("kind"), classes: try f.strings("classes"), train: try SetRecord(try f.object("train")),
                  test: try SetRecord(try f.object("test")))
        if f.has("split") { (split, seed) = (try f.double("split"), try f.int("seed")) }
    }
}

func epochsJSON(_ logs: [EpochLog]) -> JSONValue {
    .array(logs.map {
        .object([
        ("epoch", .int($0.epoch)), ("mean_loss", .double($0.meanLoss)),
        ("train_accuracy_running", .double($0.trainAccuracy)),
                               ("learning_rate", .double($0.learningRate)),
                                   ("seconds", .double(($0.seconds * 100).rounded() / 100))]) })
}
