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
        let taps = MapsTaps(tokens: T, prefix: c.prefixTokens, heads: H, layers: L, classToken: classToken, fusion: fusion, discard: discard)
        var rollout: [[Double]] = [], pictures: [RGBImage] = [], classMeans: [[[Double]]] = [], mass: [[Double]] = []
        try images.forEach { batch in
            let n0 = batch.index * images.batch
            taps.begin(batch.count)
            if batch.count > 0 { try model.run(batch.images, taps: taps, batch: batch.index) }
            for i in 0..<batch.count {
                let m = taps.maps[i]
                precondition(m.blocksAdded == L, "every block's attention reaches the taps")
                let a = taps.classAttention + i * taps.perImage
                try cls.write(a, count: L * H * P, at: (n0 + i) * L * H * P)
                rollout.append(m.rollout)
                // Per block: Σ over the patches of the class attention, mean over heads.
                mass.append((0..<L).map { l in (0..<H).reduce(0.0) { s, h in s + (0..<P).reduce(0.0) { $0 + Double(a[(l * H + h) * P + $1]) } } / Double(H) })
                if shown.contains(n0 + i) {
                    pictures.append(Self.picture(batch.images.data + i * 3 * S * S, size: S))
                    classMeans.append(drawn.map { b in
                        (0..<P).map { k in (0..<H).reduce(0.0) { $0 + Double(a[((b - 1) * H + $1) * P + k]) } / Double(H) }
                    })
                }
            }
            context.observer.progress("maps", done: n0 + batch.count, total: N)
        }
        context.observer.progressEnded()
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
                            ("rollout_max", .double(r[top])), ("rollout_argmax", .array([.int(top / g), .int(top % g)])),
                            ("class_attention_on_patches", .doubles(mass[i]))])
        }
        let json: JSONValue = .object(context.header + [
            ("setup", .object([
                ("command", "maps"), ("model", model.json), ("images", imagesJSON(names, folder: folder)),
                ("definitions", .object([
                    ("class_attention", .string(classToken
                        ? "the class token's softmax probabilities over the patch keys, per block and head (not renormalised over the patches)"
                        : "no class token: the mean over the patch queries of the probabilities over the patch keys")),
                    ("rollout", .string("Abnar & Zuidema 2020: per block the heads fused (\(fusion.rawValue)), the smallest ⌊\(csvNumber(discard))·T⌋ entries of each row set to 0, A = (Ā + I)/2 with rows renormalised to 1, R = A_L ⋯ A_1 over all \(T) tokens (float64); the map is the \(classToken ? "class token's row" : "mean of the patch rows") of R over the patch columns")),
                    ("fusion", .string(fusion.rawValue)), ("discard", .double(discard)),
                    ("discarded_per_row", .int(Int((discard * Double(T)).rounded(.down)))),
                    ("figure", "each map scaled from its minimum to its maximum, upsampled bilinearly (half-pixel centres) to the image, magma at 60 % opacity over the image the model saw"),
                    ("resize", .string(images.mode.rawValue)), ("image_size", .int(S)), ("batch", .int(images.batch)),
                ])),
                ("blocks_drawn", .array(drawn.map { .int($0) })),
                ("images_drawn", .array(Self.drawn(of: N).map { .int($0) })),
            ])),
            ("images_used", .int(N)),
            ("files", .object([
                ("cls_attention.npy", .object([("dtype", "float32"), ("shape", .array([N, L, H, g, g].map { .int($0) })),
                                               ("axes", "[image, block 1..L, head, patch row, patch column]")])),
                ("rollout.npy", .object([("dtype", "float32"), ("shape", .array([N, g, g].map { .int($0) })),
                                         ("axes", "[image, patch row, patch column]")])),
            ])),
            ("results", .object([
                ("class_attention_on_patches", .doubles((0..<L).map { l in mass.reduce(0) { $0 + $1[l] } / Double(max(1, N)) })),
                ("images", .array(perImage)),
            ])),
        ])
        try out.write("maps.json", json.render() + "\n")
        let picked = Self.drawn(of: N)
        return MapsResult(json: json, name: model.name, grid: g, blocks: drawn, heads: H, names: picked.map { names[$0] },
                          pictures: pictures, classMeans: classMeans, rollouts: picked.map { rollout[$0] })
    }

    /// The image the model saw, back from its normalised (3, S, S) tensor: ((x·std + mean)·255)
    /// rounded, which returns each input byte exactly.
    static func picture(_ x: UnsafePointer<Float>, size S: Int) -> RGBImage {
        var px = [UInt8](repeating: 0, count: S * S * 3)
        for c in 0..<3 {
            let m = Normalisation.mean[c], s = Normalisation.std[c]
            for i in 0..<(S * S) { px[3 * i + c] = UInt8(min(255, max(0, ((x[c * S * S + i] * s + m) * 255).rounded()))) }
        }
        return RGBImage(width: S, height: S, pixels: px)
    }
}

/// Class attention and rollout of each image of a batch, from the engine's attention taps
/// (called concurrently for different images; each image has its own state).
final class MapsTaps: ForwardTaps {
    let tokens, prefix, heads, layers: Int
    let classToken: Bool
    let fusion: HeadFusion
    let discard: Double
    var maps: [AttentionMaps] = []
    /// (B, L, H, P). Raw storage: the taps of different images write their own slots at once,
    /// which Swift arrays (with their exclusivity checks) do not allow.
    private(set) var classAttention: UnsafeMutablePointer<Float>
    private var capacity = 0
    var perImage: Int { layers * heads * (tokens - prefix) }

    init(tokens: Int, prefix: Int, heads: Int, layers: Int, classToken: Bool, fusion: HeadFusion, discard: Double) {
        (self.tokens, self.prefix, self.heads, self.layers, self.classToken, self.fusion, self.discard) = (tokens, prefix, heads, layers, classToken, fusion, discard)
        classAttention = .allocate(capacity: 1)
    }

    deinit { classAttention.deallocate() }

    func begin(_ count: Int) {
        maps = (0..<count).map { _ in
            AttentionMaps(tokens: tokens, prefix: prefix, heads: heads, classToken: classToken, fusion: fusion, discard: discard)
        }
        if count * perImage > capacity {
            classAttention.deallocate()
            capacity = count * perImage
            classAttention = .allocate(capacity: capacity)
        }
        classAttention.update(repeating: 0, count: count * perImage)
    }

    var wantsRepresentations: Bool { false }
    var wantsAttentionLogits: Bool { false }
    var wantsAttentionProbabilities: Bool { true }
    func representation(_ index: Int, _ x: UnsafePointer<Float>, batch: Int) {}

    func attention(layer: Int, image: Int, logits: UnsafePointer<Float>?, probabilities: UnsafePointer<Float>) {
        let m = maps[image], P = tokens - prefix
        m.classAttention(probabilities, into: classAttention + image * perImage + layer * heads * P)
        m.addBlock(probabilities)
    }
}

/// A maps report: what the figure needs, and maps.json.
public struct MapsResult {
    public let json: JSONValue
    public let name: String
    public let grid: Int
    public let blocks: [Int]
    public let heads: Int
    public let names: [String]
    /// The drawn images as the model saw them.
    public let pictures: [RGBImage]
    /// Per drawn image, per drawn block: head-mean class attention (P).
    public let classMeans: [[[Double]]]
    /// Per drawn image: the rollout map (P).
    public let rollouts: [[Double]]

    /// Opacity of the maps over the images.
    static let opacity = 0.6

    /// The image with a map over it: the map scaled from its minimum (0) to its maximum (1),
    /// upsampled bilinearly to the image, magma at `opacity`.
    public static func overlay(_ img: RGBImage, map: [Double], grid g: Int) -> RGBImage {
        let S = img.width
        let up = upsampleBilinear(map, grid: g, size: S)
        let lo = map.min() ?? 0, span = (map.max() ?? 0) - lo
        var px = img.pixels
        for i in 0..<(S * S) {
            let c = Magma.color(span > 0 ? (up[i] - lo) / span : 0)
            for (k, v) in [c.r, c.g, c.b].enumerated() {
                px[3 * i + k] = UInt8(((1 - opacity) * Double(img.pixels[3 * i + k]) + opacity * Double(v)).rounded())
            }
        }
        return RGBImage(width: S, height: S, pixels: px)
    }

    public func figure(title: String?) -> Figure {
        let cell = 150.0, gap = 10.0, left = 20.0, top = 96.0, rowH = cell + 24
        let columns = 2 + blocks.count
        let barX = left + Double(columns) * (cell + gap) + 14
        let width = barX + 90, height = top + Double(pictures.count) * rowH + 12
        var fig = Figure(width: width, height: height, title: title ?? "Attention maps: \(name)")
        fig.fittedText(fig.title, width / 2, 30, size: 17, maxWidth: width - 40, anchor: .middle)
        let n = json["images_used"]?.intValue ?? pictures.count
        let fusion = json[path: "setup", "definitions", "fusion"]?.stringValue ?? "mean"
        let discard = json[path: "setup", "definitions", "discard"]?.doubleValue ?? 0
        // Without a class token (SigLIP) the maps are the patch queries' mean attention (maps.json defines it).
        let classToken = json[path: "setup", "model", "architecture", "class_token"]?.boolValue ?? true
        let sub = (classToken ? "class token → patches" : "no class token: query mean → patches")
            + ", mean over \(heads) heads · rollout: heads fused by \(fusion), discard \(csvNumber(discard))"
            + " · each map from its minimum to its maximum · \(pictures.count) of \(n) images shown"
        fig.fittedText(sub, width / 2, 52, size: 12, maxWidth: width - 40, color: Color(hex: 0x555555), anchor: .middle)
        let heads = ["image"] + blocks.map { "block \($0)" } + ["rollout"]
        for (j, h) in heads.enumerated() {
            fig.text(h, left + Double(j) * (cell + gap) + cell / 2, top - 10, size: 13, anchor: .middle, bold: true)
        }
        for (i, img) in pictures.enumerated() {
            let y = top + Double(i) * rowH
            let maps = classMeans[i] + [rollouts[i]]
            let tiles = [img] + maps.map { Self.overlay(img, map: $0, grid: grid) }
            for (j, t) in tiles.enumerated() {
                let x = left + Double(j) * (cell + gap)
                fig.image(t, x, y, x + cell, y + cell)
                fig.rect(x, y, x + cell, y + cell, stroke: Color(hex: 0xbbbbbb), lineWidth: 1)
            }
            let folder = json[path: "setup", "images", "folder"]?.stringValue ?? ""
            let shown = !folder.isEmpty && names[i].hasPrefix(folder + "/") ? String(names[i].dropFirst(folder.count + 1)) : names[i]
            fig.fittedText(shown, left + cell / 2, y + cell + 15, size: 11, maxWidth: cell, color: Color(hex: 0x555555), anchor: .middle)
        }
        // The colour bar: magma at the overlay's opacity over white, each map's minimum … maximum.
        let barTop = top, barH = min(300, max(120, height - top - 30)), barW = 16.0
        let steps = 100
        for k in 0..<steps {
            let v = 1 - (Double(k) + 0.5) / Double(steps), c = Magma.color(v)
            let mix = { (b: UInt8) in UInt8(((1 - Self.opacity) * 255 + Self.opacity * Double(b)).rounded()) }
            fig.rect(barX, barTop + Double(k) * barH / Double(steps), barX + barW, barTop + Double(k + 1) * barH / Double(steps),
                     fill: Color(mix(c.r), mix(c.g), mix(c.b)))
        }
        fig.rect(barX, barTop, barX + barW, barTop + barH, stroke: .axis, lineWidth: 1)
        for (v, label) in [(1.0, "max"), (0.0, "min")] {
            let y = barTop + (1 - v) * barH
            fig.rect(barX + barW, y - 0.5, barX + barW + 4, y + 0.5, fill: .axis)
            fig.text(label, barX + barW + 7, y + 4, size: 11)
        }
        fig.text("each map, minimum to maximum", barX - 4, barTop + barH / 2, size: 11, color: Color(hex: 0x555555), anchor: .middle, rotated: true)
        return fig
    }

    public func draw(into out: OutputDirectory, style: FigureStyle, _ observer: RunObserver) throws -> [String] {
        let fig = figure(title: style.title)
        var files = try Drawing.write(fig, "maps", out: out, style: style, observer)
        var page = HTMLPage(title: fig.title)
        let defs = json[path: "setup", "definitions"]
        page.add(.paragraph("Each row is one image as the model saw it, then the class token's attention over the patches (mean over heads) after the blocks named above, then attention rollout. Each map is scaled from its own minimum to its own maximum and drawn over the image in magma at 60 % opacity; maps.json records each rollout map's maximum, cls_attention.npy and rollout.npy the values."))
        page.add(.figure(svg: fig.svg(), png: "maps.png", caption: "Class attention and attention rollout."))
        page.add(.heading("Definitions"))
        page.add(.paragraph("Class attention: " + (defs?["class_attention"]?.stringValue ?? "") + "."))
        page.add(.paragraph("Rollout: " + (defs?["rollout"]?.stringValue ?? "") + ". vitlens divides each row by its own sum; the popular vit-explain code divides without keepdim (each column by a row's sum) and always fuses by mean on its gradient path."))
        let L = json[path: "files", "cls_attention.npy", "shape"]?.arrayValue?[1].intValue ?? 0
        if let mass = json[path: "results", "class_attention_on_patches"]?.arrayValue {
            page.add(.table(caption: "Class attention on the patches (the rest goes to the class and register tokens), mean over heads and images",
                            header: ["block"] + (1...max(1, L)).map { "\($0)" }, rows: [["share"] + mass.map { csvNumber($0.doubleValue ?? .nan) }], colors: nil))
        }
        page.add(.keyValues(caption: "Files", [("cls_attention.npy", "float32 [image, block, head, patch row, patch column]"),
                                               ("rollout.npy", "float32 [image, patch row, patch column]"),
                                               ("maps.json", "setup, definitions, per-image rollout maxima")]))
        Drawing.runSection(&page, json)
        try out.write("index.html", page.render())
        files.append("index.html")
        return files
    }
}
