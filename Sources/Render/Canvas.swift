import CPNG
import Foundation

/// An sRGB colour, 8 bits per channel.
public struct Color: Equatable, Hashable, Sendable {
    public var r, g, b: UInt8
    public init(_ r: UInt8, _ g: UInt8, _ b: UInt8) { self.r = r; self.g = g; self.b = b }
    public init(hex: UInt32) { self.init(UInt8(hex >> 16 & 255), UInt8(hex >> 8 & 255), UInt8(hex & 255)) }
    public var hex: String { String(format: "#%02x%02x%02x", r, g, b) }

    public static let white = Color(255, 255, 255), black = Color(0, 0, 0)
    public static let text = Color(hex: 0x222222), grid = Color(hex: 0xe6e6e6), axis = Color(hex: 0x444444)
}

/// An RGB raster (white background) that marks are blended into by coverage, as Agg does:
/// colour = old·(1 − a) + new·a per channel, a the pixel coverage times the opacity.
public struct Canvas {
    public let width, height: Int
    /// (height, width, 3) row-major.
    public private(set) var pixels: [UInt8]

    public init(width: Int, height: Int, background: Color = .white) {
        self.width = width
        self.height = height
        pixels = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) {
            pixels[3 * i] = background.r; pixels[3 * i + 1] = background.g; pixels[3 * i + 2] = background.b }
    }

    /// A canvas of given RGB bytes ((height, width, 3) row-major).
    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * 3, "pixels of the wrong size")
        (self.width, self.height, self.pixels) = (width, height, pixels)
    }

    /// Draws an image over the pixels whose centres lie inside [x0, x1) × [y0, y1), sampled
    /// bilinearly.
    mutating func draw(_ img: RGBImage, x0: Double, y0: Double, x1: Double, y1: Double) {
        let ix0 = max(0, Int(x0.rounded())), ix1 = min(width, Int(x1.rounded()))
        let iy0 = max(0, Int(y0.rounded())), iy1 = min(height, Int(y1.rounded()))
        guard ix1 > ix0, iy1 > iy0 else { return }
        for y in iy0..<iy1 {
            let v = (Double(y) + 0.5 - y0) / (y1 - y0)
            for x in ix0..<ix1 {
                let c = img.sample((Double(x) + 0.5 - x0) / (x1 - x0), v)
                let i = 3 * (y * width + x)
                pixels[i] = c.r; pixels[i + 1] = c.g; pixels[i + 2] = c.b
            }
        }
    }

    public func pixel(_ x: Int, _ y: Int) -> Color {
        let i = 3 * (y * width + x)
        return Color(pixels[i], pixels[i + 1], pixels[i + 2])
    }

    @inline(__always) mutating func blend(_ x: Int, _ y: Int, _ c: Color, _ a: Double) {
        guard x >= 0, y >= 0, x < width, y < height, a > 0 else { return }
        let i = 3 * (y * width + x)
        if a >= 1 { pixels[i] = c.r; pixels[i + 1] = c.g; pixels[i + 2] = c.b; return }
        func mix(_ o: UInt8, _ n: UInt8) -> UInt8 { UInt8((Double(o) * (1 - a) + Double(n) * a).rounded()) }
        pixels[i] = mix(pixels[i], c.r); pixels[i + 1] = mix(pixels[i + 1], c.g); pixels[i + 2] = mix(
            pixels[i + 2], c.b)
    }

    /// Fills the pixels whose centres lie inside [x0, x1) × [y0, y1): edges snap to the pixel
    /// grid, so adjacent cells meet without seams and a cell's interior is exactly its colour.
    public mutating func fill(x0: Double, y0: Double, x1: Double, y1: Double, _ c: Color, opacity: Double = 1) {
        let ix0 = max(0, Int((min(x0, x1)).rounded())), ix1 = min(width, Int((max(x0, x1)).rounded()))
        let iy0 = max(0, Int((min(y0, y1)).rounded())), iy1 = min(height, Int((max(y0, y1)).rounded()))
        guard ix0 < ix1, iy0 < iy1 else { return }
        for y in iy0..<iy1 { for x in ix0..<ix1 { blend(x, y, c, opacity) } }
    }

    /// A stroke along a segment with round caps: coverage from the distance of each pixel
    /// centre to the segment (one pixel of anti-aliasing).
    public mutating func segment(_ ax: Double, _ ay: Double, _ bx: Double, _ by: Double, width w: Double, _ c: Color) {
        let r = w / 2
        let minX = Int((min(ax, bx) - r - 1).rounded(.down)), maxX = Int((max(ax, bx) + r + 1).rounded(.up))
        let minY = Int((min(ay, by) - r - 1).rounded(.down)), maxY = Int((max(ay, by) + r + 1).rounded(.up))
        let dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy
        for y in max(0, minY)...max(0, min(height - 1, maxY)) {
            for x in max(0, minX)...max(0, min(width - 1, maxX)) {
                let px = Double(x) + 0.5, py = Double(y) + 0.5
                let t = len2 > 0 ? max(0, min(1, ((px - ax) * dx + (py - ay) * dy) / len2)) : 0
                let ex = px - (ax + t * dx), ey = py - (ay + t * dy)
                let d = (ex * ex + ey * ey).squareRoot()
                blend(x, y, c, min(1, max(0, r + 0.5 - d)) * (r < 0.5 ? 2 * r : 1))
            }
        }
    }

    /// A disc, or a ring of `ringWidth` when that is given.
    public mutating func disc(_ cx: Double, _ cy: Double, radius: Double, _ c: Color, ringWidth: Double? = nil) {
        let minX = Int((cx - radius - 1).rounded(.down)), maxX = Int((cx + radius + 1).rounded(.up))
        let minY = Int((cy - radius - 1).rounded(.down)), maxY = Int((cy + radius + 1).rounded(.up))
        for y in max(0, minY)...max(0, min(height - 1, maxY)) {
            for x in max(0, minX)...max(0, min(width - 1, maxX)) {
                let d = (
                    (Double(x) + 0.5 - cx) * (Double(x) + 0.5 - cx)
                    + (Double(y) + 0.5 - cy) * (Double(y) + 0.5 - cy)).squareRoot()
                var a = min(1, max(0, radius + 0.5 - d))
                if let rw = ringWidth { a = min(a, min(1, max(0, d - (radius - rw) + 0.5))) }
                blend(x, y, c, a)
            }
        }
    }

    /// Text with its baseline at y; `rotated` turns it 90° counter-clockwise about (x, y).
    public mutating func text(
        _ s: String, x: Double, y: Double, size: Double, _ c: Color, font: Font, rotated: Bool = false) {
        var pen = 0.0
        for u in s.unicodeScalars {
            let g = font.glyph(u, size: size)
            let gx = Int((pen).rounded()) + g.left
            for r in 0..<g.rows {
                for col in 0..<g.width {
                    let a = Double(g.coverage[r * g.width + col]) / 255
                    if a == 0 { continue }
                    // Glyph pixel at (gx + col, -top + r) relative to the pen on the baseline.
                    let u = gx + col, v = r - g.top
                    if rotated { blend(Int(x.rounded()) + v, Int(y.rounded()) - u - 1, c, a) }
                    else { blend(Int(x.rounded()) + u, Int(y.rounded()) + v, c, a) }
                }
            }
            pen += g.advance
        }
    }

    /// PNG bytes through libpng's simplified API (errors are return values, never longjmp).
    public func png() throws -> [UInt8] {
        var img = png_image()
        img.version = UInt32(PNG_IMAGE_VERSION)
        img.width = UInt32(width)
        img.height = UInt32(height)
        img.format = UInt32(PNG_FORMAT_RGB)
        // Speed over the last few percent of size: a figure is encoded in a few ms instead of ~35.
        img.flags = UInt32(PNG_IMAGE_FLAG_FAST)
        var size = 0
        let ok1 = pixels.withUnsafeBytes {
            png_image_write_to_memory(&img, nil, &size, 0, $0.baseAddress, Int32(width * 3), nil) }
        guard ok1 != 0, size > 0 else { throw RenderError.png(message(&img)) }
        var out = [UInt8](repeating: 0, count: size)
        let ok2 = out.withUnsafeMutableBytes { o in
            pixels.withUnsafeBytes {
                png_image_write_to_memory(&img, o.baseAddress, &size, 0, $0.baseAddress, Int32(width * 3), nil) }
        }
        guard ok2 != 0 else { throw RenderError.png(message(&img)) }
        png_image_free(&img)
        return Array(out.prefix(size))
    }

    private func message(_ img: inout png_image) -> String {
        let m = withUnsafeBytes(of: &img.message) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
        png_image_free(&img)
        return m
    }
}

public enum RenderError: Error, CustomStringConvertible {
    case png(String)
    case invalid(String)
    public var description: String {
        switch self {
        case let .png(m): return "PNG encoding failed: \(m)"
        case let .invalid(m): return m
        }
    }
}
