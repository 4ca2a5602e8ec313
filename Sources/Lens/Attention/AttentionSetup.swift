import Analysis
import Foundation

/// What every shard of an attention run must share, and what each model's report records of
/// how it was made: the model (or array), the images, the definitions, layers and heads.
public struct AttentionSetup: JSONRecord, Equatable {
    public var model: SideRecord
    public var images: ImagesRecord
    public var definitions: Definitions
    public var layers, heads: Int
    /// Box statistics over heads × images (else over heads).
    public var perImage: Bool
    public var totalBatches: Int

    public struct Definitions: Equatable {
        /// "pixels" or "mae-lite", and the scale it gives a patch-grid step.
        public var convention: String
        public var distanceScale: Double
        public var distanceUnit: String
        public var entropyUnit = "nats"
        public var attention = "patch tokens only: prefix rows/columns dropped, softmax again over the patch keys "
            + "(mae-lite)"
        public var entropy = "−Σ p·ln(p + 1e−6) per query, mean over queries and images"
        public var distance = "Σ p·‖g(q) − g(k)‖₂·scale per query, mean over queries and images"
        public var box: String
        public var batch: Int
        public var resize: String
        public var imageSize: Int?
        public var skipBadImages: Bool

        public init(convention: DistanceConvention, patch: Int, perImage: Bool, batch: Int, resize: String,
                    imageSize: Int?, skipBadImages: Bool) {
            self.convention = convention.rawValue
            distanceScale = convention.scale(patch: patch)
            distanceUnit = convention == .pixels ? "pixels" : "mae-lite units (patch grid steps × 14)"
            box = "per layer over heads" + (perImage ? " × images" : "")
                + "; quartiles linear (numpy), whiskers at 1.5·IQR"
            (self.batch, self.resize, self.imageSize, self.skipBadImages) = (batch, resize, imageSize, skipBadImages)
        }

        init(_ f: JSONFields) throws {
            convention = try f.string("convention")
            distanceScale = try f.double("distance_scale")
            distanceUnit = try f.string("distance_unit")
            entropyUnit = try f.string("entropy_unit")
            attention = try f.string("attention")
            entropy = try f.string("entropy")
            distance = try f.string("distance")
            box = try f.string("box")
            batch = try f.int("batch")
            resize = try f.string("resize")
            imageSize = try f.optionalInt("image_size")
            skipBadImages = try f.bool("skip_bad_images")
        }

        var json: JSONValue {
            .object([
                ("convention", .string(convention)), ("distance_scale", .double(distanceScale)),
                ("distance_unit", .string(distanceUnit)),
                ("entropy_unit", .string(entropyUnit)),
                ("attention", .string(attention)),
                ("entropy", .string(entropy)),
                ("distance", .string(distance)),
                ("box", .string(box)),
                ("batch", .int(batch)), ("resize", .string(resize)),
                    ("image_size", imageSize.map { .int($0) } ?? .null),
                ("skip_bad_images", .bool(skipBadImages)),
            ])
        }
    }

    public init(model: SideRecord, images: ImagesRecord, definitions: Definitions, layers: Int, heads: Int,
                perImage: Bool, totalBatches: Int) {
        (self.model, self.images, self.definitions) = (model, images, definitions)
        (self.layers, self.heads, self.perImage, self.totalBatches) = (layers, heads, perImage, totalBatches)
    }

    public var json: JSONValue {
        .object([
            ("command", "attention"), ("model", model.json),
            ("images", images.json),
            ("definitions", definitions.json),
            ("layers", .int(layers)), ("heads", .int(heads)), ("per_image", .bool(perImage)),
            ("total_batches", .int(totalBatches)),
        ])
    }

    public init(json: JSONValue) throws {
        let f = try JSONFields(json, record: "attention setup")
        try checkCommand(f, "attention")
        self.init(model: try SideRecord(json: try f.raw("model")), images: try ImagesRecord(json: try f.raw("images")),
                  definitions: try Definitions(try f.object("definitions")), layers: try f.int("layers"),
                  heads: try f.int("heads"), perImage: try f.bool("per_image"),
                      totalBatches: try f.int("total_batches"))
    }
}
