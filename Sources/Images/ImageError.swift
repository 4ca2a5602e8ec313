public enum ImageError: Error, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case tooLarge(path: String, width: Int, height: Int)
    case wrongSize(path: String, width: Int, height: Int, expected: Int)
    case folder(path: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason): return "\(path): cannot decode image (\(reason))"
        case let .tooLarge(path, w, h):
            return "\(path): image of \(w)x\(h) pixels is larger than vitlens accepts "
                + "(\(DecodedImage.maxPixels) pixels)"
        case let .wrongSize(path, w, h, s):
            return "\(path): image is \(w)x\(h), not the model's \(s)x\(s), and resizing is off (resize mode none; "
                + "timm-eval resizes and crops)"
        case let .folder(path, reason): return "\(path): \(reason)"
        }
    }
}
