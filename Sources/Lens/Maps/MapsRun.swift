import Analysis
import Engine
import Foundation
import Images
import Render
import VitLensCore

/// The attention of a model drawn on its images: per image, block and head the class token's
/// attention over the patches, and attention rollout (`vitlens maps`, see `AttentionMaps`).
public struct MapsRun {
    public let model: AnalysisModel
    /// The images (already cut to the first N).
    public let images: ImageBatches
    public let folder: String
    /// Blocks (1-based) drawn with their head-mean class attention; nil: 1, L/2 and L.
    public var blocks: [Int]?
    public var fusion: HeadFusion = .mean
    /// Fraction of each row of the fused attention set to 0 before rollout.
    public var discard: Double = 0
    /// Images drawn in maps.png at most (the arrays hold all of them).
    public static let drawnImages = 8

    /// Which of N images the figure shows: all up to 8, else 8 spread evenly (i·N/8).
    public static func drawn(of n: Int) -> [Int] {
        n <= drawnImages ? Array(0..<n) : (0..<drawnImages).map { $0 * n / drawnImages }
    }

    public init(model: AnalysisModel, images: ImageBatches, folder: String) {
        (self.model, self.images, self.folder) = (model, images, folder)
    }

    /// 1, L/2, L without repeats.
    public static func defaultBlocks(depth L: Int) -> [Int] {
        var seen = Set<Int>()
        return [1, max(1, L / 2), L].filter { seen.insert($0).inserted }
    }

    public func run(into out: OutputDirectory, _ context: RunContext) throws -> MapsResult {
        let c = model.config, L = c.depth, H = c.heads, T = c.tokens, g = c.runGrid, P = c.patches, S = c.imageSize
        let drawn = blocks ?? Self.defaultBlocks(depth: L)
        let N = images.items.count
        let classToken = c.classToken
        let shown = Set(Self.drawn(of: N))
        let cls = try NpyWriter(path: out.staged("cls_attention.npy"), shape: [N, L, H, g, g])
        let taps = MapsTaps(
            tokens: T, prefix: c.prefixTokens, heads: H, layers: L, classToken: classToken, fusion: fusion,
            discard: discard)
        var rollout: [[Double]] = [], pictures: [RGBImage] = [], classMeans: [[[Double]]] = [], mass: [[Double]] = []
        let driver = BatchDriver(images: images, count: N, batch: images.batch, label: "maps")
        try driver.run([ModelSource(model, taps: taps)], context) { batch in
            let n0 = batch.start
            for i in 0..<batch.count {
                let m = taps.maps[i]
                precondition(m.blocksAdded == L, "every block's attention reaches the taps")
                let a = taps.classAttention + i * taps.perImage
                try cls.write(a, count: L * H * P, at: (n0 + i) * L * H * P)
                rollout.append(m.rollout)
                // Per block: Σ over the patches of the class attention, mean over heads.
                mass.append(
                    (0..<L).map {
                    l in (0..<H).reduce(0.0) {
                    s, h in s + (0..<P).reduce(0.0) { $0 + Double(a[(l * H + h) * P + $1]) } } / Double(H) })
                if shown.contains(n0 + i) {
                    pictures.append(Self.picture(batch.images!.data + i * 3 * S * S, size: S))
                    classMeans.append(drawn.map { b in
                        (0..<P).map {
                            k in (0..<H).reduce(0.0) { $0 + Double(a[((b - 1) * H + $1) * P + k]) } / Double(H) }
                    })
                }
            }
        }
        try cls.close()
        let roll = try NpyWriter(path: out.staged("rollout.npy"), shape: [N, g, g])
        for (i, r) in rollout.enumerated() {
            let f = r.map { Float($0) }
            try f.withUnsafeBufferPointer { try roll.write($0.baseAddress!, count: P, at: i * P) }
        }
        try roll.close()

        let names = images.names
        let perImage: [JSONValue] = rollout.enumerated().map { i, r in
            let top = r.indices.max { r[$0] < r[$1] }!
            return .object([("image", .string(names[i])),
                            ("rollout_max", .double(r[top])),
                                ("rollout_argmax", .array([.int(top / g), .int(top % g)])),
                            ("class_attention_on_patches", .doubles(mass[i]))])
        }
        let setup = MapsSetup(
            model: model.record, images: ImagesRecord(paths: names, folder: folder), classToken: classToken,
                fusion: fusion,
            discard: discard, tokens: T, resize: images.mode.rawValue, imageSize: S, batch: images.batch,
            blocksDrawn: drawn, imagesDrawn: Self.drawn(of: N))
        let shareOnPatches = (0..<L).map { l in mass.reduce(0) { $0 + $1[l] } / Double(max(1, N)) }
        let json: JSONValue = .object(context.run.fields + [
            ("setup", setup.json),
            ("images_used", .int(N)),
            ("files", .object([
                ("cls_attention.npy",
                    .object([("dtype", "float32"), ("shape", .array([N, L, H, g, g].map { .int($0) })),
                                               ("axes", "[image, block 1..L, head, patch row, patch column]")])),
                ("rollout.npy", .object([("dtype", "float32"), ("shape", .array([N, g, g].map { .int($0) })),
                                         ("axes", "[image, patch row, patch column]")])),
            ])),
            ("results", .object([
                ("class_attention_on_patches", .doubles(shareOnPatches)),
                ("images", .array(perImage)),
            ])),
        ])
        try out.write("maps.json", json.render() + "\n")
        let picked = Self.drawn(of: N)
        return MapsResult(json: json, setup: setup, imagesUsed: N, classAttentionOnPatches: shareOnPatches,
                          name: model.name, grid: g, blocks: drawn, heads: H, names: picked.map { names[$0] },
                          pictures: pictures, classMeans: classMeans, rollouts: picked.map { rollout[$0] })
    }

    /// The image the model saw, back from its normalised (3, S, S) tensor: ((x·std + mean)·255)
    /// rounded, which returns each input byte exactly.
    static func picture(_ x: UnsafePointer<Float>, size S: Int) -> RGBImage {
        var px = [UInt8](repeating: 0, count: S * S * 3)
        for c in 0..<3 {
            let m = Normalisation.mean[c], s = Normalisation.std[c]
            for i in 0..<(S * S) {
                px[3 * i + c] = UInt8(min(255, max(0, ((x[c * S * S + i] * s + m) * 255).rounded()))) }
        }
        return RGBImage(width: S, height: S, pixels: px)
    }
}

/// What a maps report records of how it was made.
public struct MapsSetup: JSONEncodableRecord {
    public var model: ModelRecord
    public var images: ImagesRecord
    /// Whether the model has a class token (else the maps are the patch queries' mean).
    public var classToken: Bool
    public var fusion: HeadFusion
    public var discard: Double
    /// Tokens per image (the rollout's matrix size).
    public var tokens: Int
    public var resize: String
    public var imageSize, batch: Int
    public var blocksDrawn, imagesDrawn: [Int]

    var classAttention: String {
        classToken
            ? "the class token's softmax probabilities over the patch keys, per block and head (not renormalised "
                + "over the patches)"
            : "no class token: the mean over the patch queries of the probabilities over the patch keys"
    }
    var rollout: String {
        "Abnar & Zuidema 2020: per block the heads fused (\(fusion.rawValue)), the smallest ⌊\(csvNumber(discard))·T⌋ "
            + "entries of each row set to 0, A = (Ā + I)/2 with rows renormalised to 1, R = A_L ⋯ A_1 over all "
                + "\(tokens) "
            + "tokens (float64); the map is the \(classToken ? "class token's row" : "mean of the patch rows") of R "
                + "over "
            + "the patch columns"
    }

    static let figureText = "each map scaled from its minimum to its maximum, upsampled bilinearly (half-pixel "
        + "centres) "
        + "to the image, magma at 60 % opacity over the image the model saw"

    public var json: JSONValue {
        .object([
            ("command", "maps"), ("model", model.json), ("images", images.json),
            ("definitions", .object([
                ("class_attention", .string(classAttention)),
                ("rollout", .string(rollout)),
                ("fusion", .string(fusion.rawValue)), ("discard", .double(discard)),
                ("discarded_per_row", .int(Int((discard * Double(tokens)).rounded(.down)))),
                ("figure", .string(Self.figureText)),
                ("resize", .string(resize)), ("image_size", .int(imageSize)), ("batch", .int(batch)),
            ])),
            ("blocks_drawn", .array(blocksDrawn.map { .int($0) })),
            ("images_drawn", .array(imagesDrawn.map { .int($0) })),
        ])
    }
}
