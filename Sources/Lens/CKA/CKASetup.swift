import Engine
import Foundation
import VitLensCore

/// What every shard of a CKA run must share, and what its report records of how it was made:
/// the two sides, the images, the definitions, the shape of the matrix.
public struct CKASetup: JSONRecord, Equatable {
    public var modelA: SideRecord
    /// `.sameAsA` for a model compared with itself.
    public var modelB: SideRecord
    public var images: ImagesRecord
    public var definitions: Definitions
    /// Representations of each side (L + 1 for a model), and the minibatches of the listing.
    public var layersA, layersB, totalBatches: Int

    public struct Definitions: Equatable {
        public var tokens, rep: String
        public var estimator = Self.estimatorText
        public var batch: Int
        /// "timm-eval", "none", or "none (features)" when every side is an array.
        public var resize: String
        /// The run's image size (nil when every side is an array).
        public var imageSize: Int?
        public var skipBadImages: Bool
        public var interval: Interval

        public init(tokens: String, rep: String, estimator: String = Self.estimatorText, batch: Int, resize: String,
                    imageSize: Int?, skipBadImages: Bool, interval: Interval) {
            (self.tokens, self.rep, self.estimator, self.batch, self.resize) = (tokens, rep, estimator, batch, resize)
            (self.imageSize, self.skipBadImages, self.interval) = (imageSize, skipBadImages, interval)
        }

        public static let estimatorText = "minibatch CKA, unbiased HSIC (Nguyen et al. 2021 eq. 3), K and L with "
            + "zeroed "
            + "diagonals, float64, batches weighted equally"
    }

    /// The percentile bootstrap over minibatches.
    public struct Interval: Equatable {
        public var kind = Self.kindText
        public var level = 0.95
        /// Resamples (0: no intervals).
        public var resamples: Int
        public var seed = 0

        public init(kind: String = Self.kindText, level: Double = 0.95, resamples: Int, seed: Int = 0) {
            (self.kind, self.level, self.resamples, self.seed) = (kind, level, resamples, seed)
        }

        public static let kindText = "percentile bootstrap over minibatches (each resample draws as many "
            + "minibatches as "
            + "there are, with replacement)"
    }

    public var selfComparison: Bool { modelB == .sameAsA }
    /// Display names (model B's is A's when it is the same model).
    public var nameA: String { modelA.name ?? "model A" }
    public var nameB: String { modelB.name ?? (selfComparison ? nameA : "model B") }

    public var json: JSONValue {
        let d = definitions, i = d.interval
        return .object([
            ("command", "cka"),
            ("model_a", modelA.json), ("model_b", modelB.json),
            ("images", images.json),
            ("definitions", .object([
                ("tokens", .string(d.tokens)), ("rep", .string(d.rep)),
                ("estimator", .string(d.estimator)),
                ("batch", .int(d.batch)), ("resize", .string(d.resize)),
                    ("image_size", d.imageSize.map { .int($0) } ?? .null),
                ("skip_bad_images", .bool(d.skipBadImages)),
                ("interval", .object([("kind", .string(i.kind)), ("level", .double(i.level)),
                                      ("resamples", .int(i.resamples)), ("seed", .int(i.seed))])),
            ])),
            ("layers_a", .int(layersA)), ("layers_b", .int(layersB)), ("total_batches", .int(totalBatches)),
        ])
    }

    public init(modelA: SideRecord, modelB: SideRecord, images: ImagesRecord, definitions: Definitions,
                layersA: Int, layersB: Int, totalBatches: Int) {
        (self.modelA, self.modelB, self.images, self.definitions) = (modelA, modelB, images, definitions)
        (self.layersA, self.layersB, self.totalBatches) = (layersA, layersB, totalBatches)
    }

    public init(json: JSONValue) throws {
        let f = try JSONFields(json, record: "CKA setup")
        try checkCommand(f, "cka")
        let d = try f.object("definitions"), i = try d.object("interval")
        self.init(
            modelA: try SideRecord(json: try f.raw("model_a")), modelB: try SideRecord(json: try f.raw("model_b")),
                  images: try ImagesRecord(json: try f.raw("images")),
                  definitions: Definitions(tokens: try d.string("tokens"), rep: try d.string("rep"),
                                           estimator: try d.string("estimator"), batch: try d.int("batch"),
                                           resize: try d.string("resize"), imageSize: try d.optionalInt("image_size"),
                                           skipBadImages: try d.bool("skip_bad_images"),
                                           interval: Interval(kind: try i.string("kind"), level: try i.double("level"),
                                                              resamples: try i.int("resamples"),
                                                                  seed: try i.int("seed"))),
                  layersA: try f.int("layers_a"), layersB: try f.int("layers_b"),
                      totalBatches: try f.int("total_batches"))
    }
}
