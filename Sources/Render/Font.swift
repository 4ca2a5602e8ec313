import CFreeType
import Foundation

public enum FontError: Error, CustomStringConvertible {
    case notFound(searched: [String])
    case freetype(path: String, call: String, code: Int32)

    public var description: String {
        switch self {
        case let .notFound(searched):
            return "no font for figures (looked for \(searched.joined(separator: ", "))); install fonts-dejavu-core "
                + "or set VITLENS_FONT to a .ttf file"
        case let .freetype(path, call, code):
            return "\(path): FreeType \(call) failed (error \(code))"
        }
    }
}

/// One rasterised glyph: 8-bit coverage, `rows` × `width`, placed `left` px right of the pen and
/// `top` px above the baseline.
struct Glyph {
    let width, rows, left, top: Int
    let advance: Double
    let coverage: [UInt8]
}

/// A TrueType face rasterised by FreeType (anti-aliased, light hinting), with a glyph cache.
/// FreeType reports errors by return code, so every call goes through `check`.
public final class Font: @unchecked Sendable {
    public let path: String
    private var library: FT_Library?
    private var face: FT_Face?
    private var cache: [Key: Glyph] = [:]
    private let lock = NSLock()
    private struct Key: Hashable { let scalar: UInt32; let size64: Int }

    /// The font figures use: $VITLENS_FONT, else DejaVu Sans from Debian's fonts-dejavu-core.
    public static let searchPath: [String] = {
        var paths: [String] = []
        if let env = ProcessInfo.processInfo.environment["VITLENS_FONT"], !env.isEmpty { paths.append(env) }
        paths += ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                  "/usr/share/fonts/TTF/DejaVuSans.ttf",
                  "/usr/local/share/fonts/DejaVuSans.ttf",
                  "/Library/Fonts/DejaVuSans.ttf"]
        return paths
    }()

    /// The default font, loaded once; nil (with the reason in `defaultError`) when none is found.
    public static let shared: Font? = try? Font.locate()
    public static var defaultError: FontError? {
        if shared != nil { return nil }
        do { _ = try locate(); return nil } catch let e as FontError { return e } catch { return nil }
    }

    static func locate() throws -> Font {
        for p in searchPath where FileManager.default.isReadableFile(atPath: p) {
            if let f = try? Font(path: p) { return f }
        }
        throw FontError.notFound(searched: searchPath)
    }

    public init(path: String) throws {
        self.path = path
        try check("FT_Init_FreeType", FT_Init_FreeType(&library))
        try check("FT_New_Face", FT_New_Face(library, path, 0, &face))
    }

    deinit {
        if let face { FT_Done_Face(face) }
        if let library { FT_Done_FreeType(library) }
    }

    private func check(_ call: String, _ code: FT_Error) throws {
        if code != 0 { throw FontError.freetype(path: path, call: call, code: code) }
    }

    /// The glyph of `scalar` at `size` pixels (em size); a missing glyph gives the face's .notdef.
    func glyph(_ scalar: Unicode.Scalar, size: Double) -> Glyph {
        let key = Key(scalar: scalar.value, size64: Int((size * 64).rounded()))
        lock.lock()
        defer { lock.unlock() }
        if let g = cache[key] { return g }
        let g = render(scalar, size64: key.size64)
            ?? Glyph(width: 0, rows: 0, left: 0, top: 0, advance: size * 0.6, coverage: [])
        cache[key] = g
        return g
    }

    private func render(_ scalar: Unicode.Scalar, size64: Int) -> Glyph? {
        guard let face else { return nil }
        guard FT_Set_Char_Size(face, 0, FT_F26Dot6(size64), 72, 72) == 0 else { return nil }
        let index = FT_Get_Char_Index(face, FT_ULong(scalar.value))
        // FT_LOAD_TARGET_LIGHT: hint vertically only, which keeps glyph shapes true; advances are the
        // unhinted linear ones, so text measures the same at every --scale and in the SVG.
        let flags = Int32(FT_LOAD_RENDER) | Int32((Int(FT_RENDER_MODE_LIGHT.rawValue) & 15) << 16)
        guard FT_Load_Glyph(face, index, flags) == 0, let slot = face.pointee.glyph else { return nil }
        let bm = slot.pointee.bitmap
        let w = Int(bm.width), h = Int(bm.rows), pitch = Int(bm.pitch)
        var cov = [UInt8](repeating: 0, count: w * h)
        if let buf = bm.buffer, bm.pixel_mode == UInt8(FT_PIXEL_MODE_GRAY.rawValue), pitch >= w {
            for r in 0..<h { for c in 0..<w { cov[r * w + c] = buf[r * pitch + c] } }
        }
        return Glyph(width: w, rows: h, left: Int(slot.pointee.bitmap_left), top: Int(slot.pointee.bitmap_top),
                     advance: Double(slot.pointee.linearHoriAdvance) / 65536, coverage: cov)
    }

    /// Advance width of `text` at `size` px.
    public func width(_ text: String, size: Double) -> Double {
        text.unicodeScalars.reduce(0) { $0 + glyph($1, size: size).advance }
    }
}

/// Text width for layout: the font's when there is one, else DejaVu Sans's average advance.
public func textWidth(_ text: String, size: Double) -> Double {
    if let f = Font.shared { return f.width(text, size: size) }
    return Double(text.unicodeScalars.count) * size * 0.6
}
