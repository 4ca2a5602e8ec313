import Foundation
import Train

/// What a probe report records of how it was made: the models, the dataset, the definitions.
public struct ProbeSetup: JSONRecord, Equatable {
    public var models: [ModelRecord]
    public var dataset: DatasetRecord
    public var definitions: Definitions

    /// How each depth is scored.
    public enum Method: Equatable {
        /// A logistic regression on the frozen features (L-BFGS to at most this many iterations).
        case linear(maxIterations: Int)
        /// The kept blocks trained end to end with a new head.
        case finetune(FineTuneSettings)
    }

    public struct Definitions: Equatable {
        public var method: Method
        public var pool: ProbePooling
        public var batch: Int
        public var resize: String
        public var imageSize: Int
        public var skipBadImages: Bool

        var mode: String { if case .linear = method { return "linear" }; return "finetune" }
        var features: String {
            "output of block k (k = 1…L kept), the model's final norm on every token, then "
                + (pool == .mean ? "the mean of the patch tokens" : "the class token")
        }

        var json: JSONValue {
            var fields: [(String, JSONValue)] = [("mode", .string(mode)), ("features", .string(features)),
                                                 ("pool", .string(pool.rawValue))]
            switch method {
            case let .finetune(s):
                fields += [
                    ("training",
                        .string("blocks 0…k−1, final norm, pooling and a new linear head (trunc. normal σ 2e−5) "
                        + "trained end to end on the train set: cross-entropy, AdamW, warm-up then cosine per step, "
                        + "layer-wise lr decay; no augmentation; images in the eval transform")),
                    ("settings", s.json),
                    ("train_accuracy",
                        "accuracy of the trained model on the train set (a forward pass after training)"),
                ]
            case let .linear(maxIterations):
                fields += [
                    ("test_accuracy_ci", "95% Wilson score interval of the test accuracy over the test images"),
                    ("standardise", .string("train mean and population standard deviation per feature (scikit-learn "
                        + "StandardScaler); constant features scale 1")),
                    ("classifier", .string("multinomial logistic regression (binary for 2 classes), L2 on the weights, "
                        + "C = 1 (scikit-learn's default): (1/N)·Σ cross-entropy + ‖W‖²/(2CN)")),
                    ("solver",
                        .string("L-BFGS in float64 until max|gradient| ≤ 1e-7 (at most \(maxIterations) iterations)")),
                ]
            }
            return .object(
                fields + [("batch", .int(batch)), ("resize", .string(resize)), ("image_size", .int(imageSize)),
                                     ("skip_bad_images", .bool(skipBadImages))])
        }

        init(method: Method, pool: ProbePooling, batch: Int, resize: String, imageSize: Int, skipBadImages: Bool) {
            (self.method, self.pool, self.batch, self.resize) = (method, pool, batch, resize)
            (self.imageSize, self.skipBadImages) = (imageSize, skipBadImages)
        }

        init(_ f: JSONFields) throws {
            guard let pool = ProbePooling(rawValue: try f.string("pool")) else {
                throw f.missing("pool", "is not mean or cls") }
            let method: Method
            switch try f.string("mode") {
            case "linear":
                // The iteration limit is the number in the solver's sentence.
                let solver = try f.string("solver")
                guard let n = solver.split(separator: " ").compactMap({ Int($0) }).last else {
                    throw f.missing("solver", "names no iteration limit")
                }
                method = .linear(maxIterations: n)
            case "finetune": method = .finetune(try FineTuneSettings(record: try f.object("settings")))
            default: throw f.missing("mode", "is not linear or finetune")
            }
            self.init(method: method, pool: pool, batch: try f.int("batch"), resize: try f.string("resize"),
                      imageSize: try f.int("image_size"), skipBadImages: try f.bool("skip_bad_images"))
        }
    }

    public init(models: [ModelRecord], dataset: DatasetRecord, definitions: Definitions) {
        (self.models, self.dataset, self.definitions) = (models, dataset, definitions)
    }

    public var json: JSONValue {
        .object([("command", "probe"), ("models", .array(models.map(\.json))), ("dataset", dataset.json),
                 ("definitions", definitions.json)])
    }

    public init(json: JSONValue) throws {
        let f = try JSONFields(json, record: "probe setup")
        try checkCommand(f, "probe")
        guard let models = try f.raw("models").arrayValue else { throw f.missing("models", "is not an array") }
        self.init(
            models: try models.map(ModelRecord.init(json:)), dataset: try DatasetRecord(json: try f.raw("dataset")),
                  definitions: try Definitions(try f.object("definitions")))
    }
}

extension FineTuneSettings: Equatable {
    public static func == (a: FineTuneSettings, b: FineTuneSettings) -> Bool { a.json.render() == b.json.render() }

    /// The recipe as reports record it.
    public var json: JSONValue {
        .object([("epochs", .int(epochs)), ("learning_rate", .double(learningRate)),
                 ("min_learning_rate", .double(minLearningRate)), ("warmup_epochs", .double(warmupEpochs)),
                 ("weight_decay", .double(weightDecay)), ("layer_decay", .double(layerDecay)),
                 ("train_batch", .int(batch)),
                     ("optimizer", "AdamW (β 0.9, 0.999, ε 1e-8), decoupled decay on weight matrices"),
                 ("schedule", "linear warm-up, then cosine to min_learning_rate, per step")])
    }

    init(record f: JSONFields) throws {
        self.init()
        (epochs, learningRate, minLearningRate) = (try f.int("epochs"), try f.double("learning_rate"),
                                                   try f.double("min_learning_rate"))
        (warmupEpochs, weightDecay, layerDecay) = (try f.double("warmup_epochs"), try f.double("weight_decay"),
                                                   try f.double("layer_decay"))
        batch = try f.int("train_batch")
    }
}
