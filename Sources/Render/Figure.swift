import CJPEG
import Foundation

public enum TextAnchor: String, Sendable { case start, middle, end }

/// One drawing primitive in figure coordinates (CSS pixels at --scale 1, y down).
public enum Mark {
    case rect(x0: Double, y0: Double, x1: Double, y1: Double, fill: Color?, stroke: Color?, lineWidth: Double)
    case polyline([(Double, Double)], color: Color, width: Double, dash: Double?)
    case circle(cx: Double, cy: Double, r: Double, fill: Color?, stroke: Color?, lineWidth: Double)
    /// Text with its baseline at y; `rotated`: 90° counter-clockwise about (x, y).
    case text(String, x: Double, y: Double, size: Double, color: Color, anchor: TextAnchor, rotated: Bool, bold: Bool)
    /// An RGB raster stretched over a rectangle (bilinear in PNG; an embedded PNG in SVG).
    case image(x0: Double, y0: Double, x1: Double, y1: Double, RGBImage)
}

/// An RGB raster for a figure: (height, width, 3) row-major bytes.
public struct RGBImage: Sendable {
    public let width, height: Int
    public let pixels: [UInt8]
    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * 3, "RGB image of the wrong size")
        (self.width, self.height, self.pixels) = (width, height, pixels)
    }

    /// The colour at figure-independent position (u, v) ∈ [0, 1]², bilinear between pixel centres.
    func sample(_ u: Double, _ v: Double) -> Color {
        let fx = min(max(u * Double(width) - 0.5, 0), Double(width - 1)),
            fy = min(max(v * Double(height) - 0.5, 0), Double(height - 1))
        let x0 = Int(fx), y0 = Int(fy), x1 = min(width - 1, x0 + 1), y1 = min(height - 1, y0 + 1)
        let wx = fx - Double(x0), wy = fy - Double(y0)
        func ch(_ c: Int) -> UInt8 {
            func p(_ x: Int, _ y: Int) -> Double { Double(pixels[3 * (y * width + x) + c]) }
            let v = (p(x0, y0) * (1 - wx) + p(x1, y0) * wx) * (1 - wy) + (p(x0, y1) * (1 - wx) + p(x1, y1) * wx) * wy
            return UInt8(min(255, max(0, v.rounded())))
        }
        return Color(ch(0), ch(1), ch(2))
    }

    /// PNG bytes of the raster.
    public func png() throws -> [UInt8] { try Canvas(width: width, height: height, pixels: pixels).png() }

    /// JPEG bytes of the raster (libjpeg-turbo, 4:4:4), for photographs embedded in SVG: a
    /// tenth of the PNG's size.
    public func jpeg(quality: Int = 92) throws -> [UInt8] {
        guard let handle = tjInitCompress() else { throw RenderError.invalid("JPEG: cannot start the encoder") }
        defer { tjDestroy(handle) }
        var out: UnsafeMutablePointer<UInt8>? = nil
        var size: UInt = 0
        let status = pixels.withUnsafeBufferPointer {
            tjCompress2(handle, $0.baseAddress, Int32(width), 0, Int32(height), Int32(TJPF_RGB.rawValue), &out, &size,
                        Int32(TJSAMP_444.rawValue), Int32(quality), 0)
        }
        defer { if let out { tjFree(out) } }
        guard status == 0,
            let out else {
            throw RenderError.invalid("JPEG encoding failed: " + String(cString: tjGetErrorStr2(handle))) }
        return Array(UnsafeBufferPointer(start: out, count: Int(size)))
    }
}

/// A figure as a list of marks, drawn the same way to PNG (raster) and SVG (vector, real `<text>`).
public struct Figure {
    public let width, height: Double
    public let title: String
    public private(set) var marks: [Mark] = []

    public init(width: Double, height: Double, title: String) {
        self.width = width
        self.height = height
        self.title = title
    }

    public mutating func add(_ m: Mark) { marks.append(m) }

    /// Draws another figure's marks into this one, its top left at (x, y), scaled by `s`
    /// (coordinates, text sizes and line widths alike): small multiples from full figures.
    public mutating func place(_ other: Figure, x: Double, y: Double, scale s: Double) {
        func p(_ px: Double, _ py: Double) -> (Double, Double) { (x + px * s, y + py * s) }
        for m in other.marks {
            switch m {
            case let .rect(x0, y0, x1, y1, fill, stroke, lw):
                let a = p(x0, y0), b = p(x1, y1)
                marks.append(.rect(x0: a.0, y0: a.1, x1: b.0, y1: b.1, fill: fill, stroke: stroke, lineWidth: lw * s))
            case let .polyline(points, color, width, dash):
                marks.append(
                    .polyline(points.map { p($0.0, $0.1) }, color: color, width: width * s, dash: dash.map { $0 * s }))
            case let .circle(cx, cy, r, fill, stroke, lw):
                let c = p(cx, cy)
                marks.append(.circle(cx: c.0, cy: c.1, r: r * s, fill: fill, stroke: stroke, lineWidth: lw * s))
            case let .text(t, tx, ty, size, color, anchor, rotated, bold):
                let c = p(tx, ty)
                marks.append(
                    .text(t, x: c.0, y: c.1, size: size * s, color: color, anchor: anchor, rotated: rotated,
                    bold: bold))
            case let .image(x0, y0, x1, y1, img):
                let a = p(x0, y0), b = p(x1, y1)
                marks.append(.image(x0: a.0, y0: a.1, x1: b.0, y1: b.1, img))
            }
        }
    }

    public mutating func image(_ img: RGBImage, _ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double) {
        marks.append(.image(x0: x0, y0: y0, x1: x1, y1: y1, img))
    }

    public mutating func rect(
        _ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double, fill: Color? = nil, stroke: Color? = nil,
        lineWidth: Double = 1) {
        marks.append(.rect(x0: x0, y0: y0, x1: x1, y1: y1, fill: fill, stroke: stroke, lineWidth: lineWidth))
    }

    public mutating func line(_ points: [(Double, Double)], _ color: Color, width: Double = 1.5, dash: Double? = nil) {
        marks.append(.polyline(points, color: color, width: width, dash: dash))
    }

    public mutating func circle(
        _ cx: Double, _ cy: Double, r: Double, fill: Color? = nil, stroke: Color? = nil, lineWidth: Double = 1) {
        marks.append(.circle(cx: cx, cy: cy, r: r, fill: fill, stroke: stroke, lineWidth: lineWidth))
    }

    public mutating func text(_ s: String, _ x: Double, _ y: Double, size: Double = 13, color: Color = .text,
                              anchor: TextAnchor = .start, rotated: Bool = false, bold: Bool = false) {
        marks.append(.text(s, x: x, y: y, size: size, color: color, anchor: anchor, rotated: rotated, bold: bold))
    }

    /// Text laid out to fit `maxWidth` pixels (default: what the canvas leaves around x for the
    /// anchor, less a margin): drawn at `size` if it fits, else smaller down to 3/4 of it, else
    /// at that size shortened in the middle with an ellipsis. Long model names never run off.
    public mutating func fittedText(
        _ s: String, _ x: Double, _ y: Double, size: Double, maxWidth: Double? = nil, color: Color = .text,
                                    anchor: TextAnchor = .start, rotated: Bool = false) {
        let margin = 8.0
        let room: Double
        switch anchor {
        case .start: room = width - x - margin
        case .end: room = x - margin
        case .middle: room = 2 * min(x, width - x) - 2 * margin
        }
        let limit = rotated ? min(maxWidth ?? height, height - 2 * margin) : max(1, min(maxWidth ?? room, room))
        var sz = size
        while textWidth(s, size: sz) > limit && sz > size * 0.75 { sz -= 0.5 }
        text(fitted(s, width: limit, size: sz), x, y, size: sz, color: color, anchor: anchor, rotated: rotated)
    }

    /// The strings of every text mark, in drawing order (for tests and the HTML page).
    public var texts: [String] {
        marks.compactMap { if case let .text(s, _, _, _, _, _, _, _) = $0 { return s }; return nil }
    }

    // MARK: raster

    /// The figure at `scale` × its size. Without a font, text is left out (the CLI warns).
    public func raster(scale: Double = 1, font: Font? = Font.shared) -> Canvas {
        var c = Canvas(width: Int((width * scale).rounded()), height: Int((height * scale).rounded()))
        for m in marks {
            switch m {
            case let .rect(x0, y0, x1, y1, fill, stroke, lw):
                if let fill { c.fill(x0: x0 * scale, y0: y0 * scale, x1: x1 * scale, y1: y1 * scale, fill) }
                if let stroke {
                    // Strokes centred on the edge, each side a snapped band of the line width.
                    let w = max(1, (lw * scale).rounded()), h = w / 2
                    let (a, b, cc, d) = (x0 * scale, y0 * scale, x1 * scale, y1 * scale)
                    c.fill(x0: a - h, y0: b - h, x1: cc + h, y1: b - h + w, stroke)
                    c.fill(x0: a - h, y0: d - h, x1: cc + h, y1: d - h + w, stroke)
                    c.fill(x0: a - h, y0: b - h, x1: a - h + w, y1: d + h, stroke)
                    c.fill(x0: cc - h, y0: b - h, x1: cc - h + w, y1: d + h, stroke)
                }
            case let .polyline(pts, color, w, dash):
                for (p, q) in Figure.segments(pts, dash: dash.map { $0 * scale }, scale: scale) {
                    c.segment(p.0, p.1, q.0, q.1, width: w * scale, color)
                }
            case let .circle(cx, cy, r, fill, stroke, lw):
                if let fill { c.disc(cx * scale, cy * scale, radius: r * scale, fill) }
                if let stroke { c.disc(cx * scale, cy * scale, radius: r * scale, stroke, ringWidth: lw * scale) }
            case let .text(s, x, y, size, color, anchor, rotated, bold):
                guard let font else { continue }
                let w = font.width(s, size: size * scale)
                let shift = anchor == .start ? 0 : anchor == .middle ? w / 2 : w
                let (px, py) = rotated ? (x * scale, y * scale + shift) : (x * scale - shift, y * scale)
                c.text(s, x: px, y: py, size: size * scale, color, font: font, rotated: rotated)
                // Bold by overstriking a third of a pixel to the right: DejaVu Sans Bold may be absent.
                if bold {
                    c.text(s, x: px + (rotated ? 0 : 0.6), y: py - (rotated ? 0.6 : 0), size: size * scale, color,
                    font: font, rotated: rotated) }
            case let .image(x0, y0, x1, y1, img):
                c.draw(img, x0: x0 * scale, y0: y0 * scale, x1: x1 * scale, y1: y1 * scale)
            }
        }
        return c
    }

    /// A polyline in scaled coordinates cut into dashes of `dash` on, `dash` off.
    static func segments(_ pts: [(Double, Double)], dash: Double?, scale: Double) -> [
        ((Double, Double), (Double, Double))] {
        let s = pts.map { ($0.0 * scale, $0.1 * scale) }
        guard s.count >= 2 else { return s.map { ($0, $0) } }
        var out: [((Double, Double), (Double, Double))] = []
        guard let dash, dash > 0 else {
            for i in 1..<s.count { out.append((s[i - 1], s[i])) }
            return out
        }
        var phase = 0.0, on = true
        for i in 1..<s.count {
            let (a, b) = (s[i - 1], s[i])
            let len = ((b.0 - a.0) * (b.0 - a.0) + (b.1 - a.1) * (b.1 - a.1)).squareRoot()
            var t = 0.0
            while t < len {
                let step = min(dash - phase, len - t)
                if on {
                    let p = (a.0 + (b.0 - a.0) * t / len, a.1 + (b.1 - a.1) * t / len)
                    let q = (a.0 + (b.0 - a.0) * (t + step) / len, a.1 + (b.1 - a.1) * (t + step) / len)
                    out.append((p, q))
                }
                t += step
                phase += step
                if phase >= dash { phase = 0; on.toggle() }
            }
        }
        return out
    }

    // MARK: SVG

    public func svg() -> String {
        var o = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(f(width))" height="\(f(height))" \
        viewBox="0 0 \(f(width)) \(f(height))" \
        font-family="DejaVu Sans, Bitstream Vera Sans, Verdana, sans-serif">
        <title>\(xmlEscape(title))</title>
        <rect width="100%" height="100%" fill="#ffffff"/>

        """
        for m in marks {
            switch m {
            case let .rect(x0, y0, x1, y1, fill, stroke, lw):
                o += "<rect shape-rendering=\"crispEdges\" x=\"\(f(min(x0, x1)))\" y=\"\(f(min(y0, y1)))\" "
                    + "width=\"\(f(abs(x1 - x0)))\" height=\"\(f(abs(y1 - y0)))\""
                o += " fill=\"\(fill?.hex ?? "none")\""
                if let stroke { o += " stroke=\"\(stroke.hex)\" stroke-width=\"\(f(lw))\"" }
                o += "/>\n"
            case let .polyline(pts, color, w, dash):
                o += "<polyline points=\"" + pts.map { "\(f($0.0)),\(f($0.1))" }.joined(separator: " ")
                o += "\" fill=\"none\" stroke=\"\(color.hex)\" stroke-width=\"\(f(w))\" stroke-linejoin=\"round\" "
                    + "stroke-linecap=\"round\""
                if let dash { o += " stroke-dasharray=\"\(f(dash)) \(f(dash))\"" }
                o += "/>\n"
            case let .circle(cx, cy, r, fill, stroke, lw):
                o += "<circle cx=\"\(f(cx))\" cy=\"\(f(cy))\" r=\"\(f(r))\" fill=\"\(fill?.hex ?? "none")\""
                if let stroke { o += " stroke=\"\(stroke.hex)\" stroke-width=\"\(f(lw))\"" }
                o += "/>\n"
            case let .text(s, x, y, size, color, anchor, rotated, bold):
                o += "<text x=\"\(f(x))\" y=\"\(f(y))\" font-size=\"\(f(size))\" fill=\"\(color.hex)\""
                if anchor != .start { o += " text-anchor=\"\(anchor.rawValue)\"" }
                if bold { o += " font-weight=\"bold\"" }
                if rotated { o += " transform=\"rotate(-90 \(f(x)) \(f(y)))\"" }
                o += ">\(xmlEscape(s))</text>\n"
            case let .image(x0, y0, x1, y1, img):
                let (type, bytes) = (try? img.jpeg()).map { ("jpeg", $0) } ?? ("png", (try? img.png()) ?? [])
                o += "<image x=\"\(f(min(x0, x1)))\" y=\"\(f(min(y0, y1)))\" width=\"\(f(abs(x1 - x0)))\" "
                    + "height=\"\(f(abs(y1 - y0)))\""
                o += " preserveAspectRatio=\"none\" "
                    + "href=\"data:image/\(type);base64,\(Data(bytes).base64EncodedString())\"/>\n"
            }
        }
        return o + "</svg>\n"
    }

    private func f(_ x: Double) -> String {
        let r = (x * 100).rounded() / 100
        return r == r.rounded() ? String(Int(r)) : String(r)
    }
}

public func xmlEscape(_ s: String) -> String {
    var o = ""
    for ch in s {
        switch ch {
        case "&": o += "&amp;"
        case "<": o += "&lt;"
        case ">": o += "&gt;"
        case "\"": o += "&quot;"
        default: o.append(ch)
        }
    }
    return o
}
