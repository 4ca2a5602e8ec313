import Analysis
import Foundation
import Render

/// A maps report: what the figure needs, and maps.json.
public struct MapsResult {
    /// maps.json as written.
    public let json: JSONValue
    public let setup: MapsSetup
    public let imagesUsed: Int
    /// Per block: the class attention's share on the patches, mean over heads and images.
    public let classAttentionOnPatches: [Double]
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
        let n = imagesUsed, fusion = setup.fusion.rawValue, discard = setup.discard
        // Without a class token (SigLIP) the maps are the patch queries' mean attention (maps.json defines it).
        let classToken = setup.classToken
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
            var folder = ""
            if case let .listed(f, _, _, _) = setup.images { folder = f }
            let shown = !folder.isEmpty && names[i].hasPrefix(folder + "/")
                ? String(names[i].dropFirst(folder.count + 1)) : names[i]
            fig.fittedText(
                shown, left + cell / 2, y + cell + 15, size: 11, maxWidth: cell, color: Color(hex: 0x555555),
                anchor: .middle)
        }
        // The colour bar: magma at the overlay's opacity over white, each map's minimum … maximum.
        let barTop = top, barH = min(300, max(120, height - top - 30)), barW = 16.0
        let steps = 100
        for k in 0..<steps {
            let v = 1 - (Double(k) + 0.5) / Double(steps), c = Magma.color(v)
            let mix = { (b: UInt8) in UInt8(((1 - Self.opacity) * 255 + Self.opacity * Double(b)).rounded()) }
            fig.rect(
                barX, barTop + Double(k) * barH / Double(steps), barX + barW, barTop
                + Double(k + 1) * barH / Double(steps),
                     fill: Color(mix(c.r), mix(c.g), mix(c.b)))
        }
        fig.rect(barX, barTop, barX + barW, barTop + barH, stroke: .axis, lineWidth: 1)
        for (v, label) in [(1.0, "max"), (0.0, "min")] {
            let y = barTop + (1 - v) * barH
            fig.rect(barX + barW, y - 0.5, barX + barW + 4, y + 0.5, fill: .axis)
            fig.text(label, barX + barW + 7, y + 4, size: 11)
        }
        fig.text(
            "each map, minimum to maximum", barX - 4, barTop + barH / 2, size: 11, color: Color(hex: 0x555555),
            anchor: .middle, rotated: true)
        return fig
    }

    public func draw(into out: OutputDirectory, style: FigureStyle, _ observer: RunObserver) throws -> [String] {
        let fig = figure(title: style.title)
        var files = try Drawing.write(fig, "maps", out: out, style: style, observer)
        var page = HTMLPage(title: fig.title)
        page.add(
            .paragraph(
            "Each row is one image as the model saw it, then the class token's attention over the patches (mean "
            + "over heads) after the blocks named above, then attention rollout. Each map is scaled from its own "
            + "minimum to its own maximum and drawn over the image in magma at 60 % opacity; maps.json records each "
            + "rollout map's maximum, cls_attention.npy and rollout.npy the values."))
        page.add(.figure(svg: fig.svg(), png: "maps.png", caption: "Class attention and attention rollout."))
        page.add(.heading("Definitions"))
        page.add(.paragraph("Class attention: " + setup.classAttention + "."))
        page.add(
            .paragraph(
            "Rollout: " + setup.rollout
            + ". vitlens divides each row by its own sum; the popular vit-explain code divides without keepdim "
            + "(each column by a row's sum) and always fuses by mean on its gradient path."))
        let L = classAttentionOnPatches.count, mass = classAttentionOnPatches
        if L > 0 {
            page.add(
                .table(caption: "Class attention on the patches (the rest goes to the class and register tokens), "
                + "mean over heads and images",
                            header: ["block"] + (1...max(1, L)).map { "\($0)" },
                                rows: [["share"] + mass.map { csvNumber($0) }], colors: nil))
        }
        page.add(
            .keyValues(
            caption: "Files", [("cls_attention.npy", "float32 [image, block, head, patch row, patch column]"),
                                               ("rollout.npy", "float32 [image, patch row, patch column]"),
                                               ("maps.json", "setup, definitions, per-image rollout maxima")]))
        Drawing.runSection(&page, json)
        try out.write("index.html", page.render())
        files.append("index.html")
        return files
    }
}
