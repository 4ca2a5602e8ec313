import CJPEG
import CPNG
import Foundation
import VitLensCore

/// An 8-bit RGB image, rows top to bottom, pixels interleaved R, G, B.
public struct DecodedImage {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    /// Headers claiming more pixels than this are refused before anything is allocated.
    public static let maxPixels = 1 << 26

    public init(width: Int, height: Int, pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// Decodes a PNG or JPEG file by its content (not its name). Grey, palette, 16-bit and
    /// alpha images become RGB; alpha is dropped, as PIL's `convert("RGB")` does.
    public static func load(path: String) throws -> DecodedImage {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch {
            throw ImageError.unreadable(path: path, reason: "\(error)".replacingOccurrences(of: path + ": ", with: ""))
        }
        return try decode(file.all, path: path)
    }

    /// Decodes PNG or JPEG bytes; `path` names them in errors.
    public static func decode(_ b: UnsafeRawBufferPointer, path: String) throws -> DecodedImage {
        if b.count >= 8, b[0] == 0x89, b[1] == 0x50, b[2] == 0x4E, b[3] == 0x47 {
            return try decodePNG(b, path: path)
        }
        if b.count >= 3, b[0] == 0xFF, b[1] == 0xD8, b[2] == 0xFF {
            return try decodeJPEG(b, path: path)
        }
        throw ImageError.unreadable(path: path, reason: "neither PNG nor JPEG data")
    }

    /// libpng's simplified `png_image_*` API: it reports errors by return value, never longjmp.
    static func decodePNG(_ b: UnsafeRawBufferPointer, path: String) throws -> DecodedImage {
        var img = png_image()
        img.version = UInt32(PNG_IMAGE_VERSION)
        func message() -> String {
            withUnsafeBytes(of: img.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        guard png_image_begin_read_from_memory(&img, b.baseAddress, b.count) != 0 else {
            let m = message()
            png_image_free(&img)
            throw ImageError.unreadable(path: path, reason: "PNG: " + m)
        }
        let w = Int(img.width), h = Int(img.height)
        guard w > 0, h > 0, w * h <= maxPixels else {
            png_image_free(&img)
            throw ImageError.tooLarge(path: path, width: w, height: h)
        }
        // 16-bit files: libpng's simplified API treats 16-bit samples as linear light and would
        // sRGB-encode them on the way to 8 bits; PIL keeps the high byte of each sample. So read
        // them as (linear, i.e. untouched) 16-bit and keep the high byte, as PIL does.
        let sixteen = img.format & UInt32(PNG_FORMAT_FLAG_LINEAR) != 0
        img.format = UInt32(PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA | (sixteen ? PNG_FORMAT_FLAG_LINEAR : 0))
        var rgb = [UInt8](repeating: 0, count: w * h * 3)
        var ok: Int32
        if sixteen {
            var rgba = [UInt16](repeating: 0, count: w * h * 4)
            ok = rgba.withUnsafeMutableBytes { png_image_finish_read(&img, nil, $0.baseAddress, 0, nil) }
            for i in 0..<(w * h) { for c in 0..<3 { rgb[3 * i + c] = UInt8(rgba[4 * i + c] >> 8) } }
        } else {
            var rgba = [UInt8](repeating: 0, count: w * h * 4)
            ok = rgba.withUnsafeMutableBytes { png_image_finish_read(&img, nil, $0.baseAddress, 0, nil) }
            for i in 0..<(w * h) { for c in 0..<3 { rgb[3 * i + c] = rgba[4 * i + c] } }
        }
        guard ok != 0 else {
            let m = message()
            png_image_free(&img)
            throw ImageError.unreadable(path: path, reason: "PNG: " + m)
        }
        return DecodedImage(width: w, height: h, pixels: rgb)
    }

    /// libjpeg-turbo through its TurboJPEG API, which returns errors instead of longjmp-ing.
    /// Default flags: accurate integer DCT and fancy upsampling, as PIL decodes.
    static func decodeJPEG(_ b: UnsafeRawBufferPointer, path: String) throws -> DecodedImage {
        guard let handle = tjInitDecompress() else {
            throw ImageError.unreadable(path: path, reason: "JPEG: cannot start decoder") }
        defer { tjDestroy(handle) }
        func message() -> String { String(cString: tjGetErrorStr2(handle)) }
        let src = b.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var w: Int32 = 0, h: Int32 = 0, sub: Int32 = 0, cs: Int32 = 0
        guard tjDecompressHeader3(handle, src, UInt(b.count), &w, &h, &sub, &cs) == 0 else {
            throw ImageError.unreadable(path: path, reason: "JPEG: " + message())
        }
        let W = Int(w), H = Int(h)
        guard W > 0, H > 0, W * H <= maxPixels else { throw ImageError.tooLarge(path: path, width: W, height: H) }
        let cmyk = cs == Int32(TJCS_CMYK.rawValue) || cs == Int32(TJCS_YCCK.rawValue)
        let channels = cmyk ? 4 : 3
        var out = [UInt8](repeating: 0, count: W * H * channels)
        let format = cmyk ? TJPF_CMYK : TJPF_RGB
        let rc = out.withUnsafeMutableBufferPointer {
            tjDecompress2(handle, src, UInt(b.count), $0.baseAddress, w, 0, h, Int32(format.rawValue), 0)
        }
        // A warning (e.g. a truncated but displayable stream) still returns -1; refuse it: the
        // pixels would silently differ from what other tools show.
        guard rc == 0 else { throw ImageError.unreadable(path: path, reason: "JPEG: " + message()) }
        if !cmyk { return DecodedImage(width: W, height: H, pixels: out) }
        // Adobe CMYK JPEGs store inverted ink values; PIL's CMYK→RGB is then r = c·k/255.
        var rgb = [UInt8](repeating: 0, count: W * H * 3)
        for i in 0..<(W * H) {
            let k = Int(out[4 * i + 3])
            for ch in 0..<3 { rgb[3 * i + ch] = UInt8((Int(out[4 * i + ch]) * k + 127) / 255) }
        }
        return DecodedImage(width: W, height: H, pixels: rgb)
    }
}
