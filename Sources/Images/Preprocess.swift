import Foundation
import VitLensCore

/// How images are brought to the model's size (docs/reference.md, "Definitions": images).
public enum ResizeMode: String, Sendable, CaseIterable {
    /// timm's eval transform: shorter side to round(size/0.875) (bicubic, antialiased, as PIL),
    /// centre crop to size.
    case timmEval = "timm-eval"
    /// Images must already be size×size; only normalisation is applied.
    case none
}

public enum Normalisation {
    public static let mean: [Float] = [0.485, 0.456, 0.406]
    public static let std: [Float] = [0.229, 0.224, 0.225]
}

/// The geometry of `--resize timm-eval` for a w×h image, as torchvision computes it:
/// Resize(short) keeps the aspect ratio with the long side truncated (`int(short·long/short0)`),
/// CenterCrop offsets are Python's round-half-to-even of (dim − size)/2.
public func timmEvalGeometry(width w: Int, height h: Int, size: Int)
    -> (resizedW: Int, resizedH: Int, left: Int, top: Int) {
    // Python's round(): halves go to the even neighbour.
    let short = Int((Double(size) / 0.875).rounded(.toNearestOrEven))
    var rw: Int, rh: Int
    if w <= h {
        rw = short; rh = Int(Double(short) * Double(h) / Double(w))
    } else {
        rh = short; rw = Int(Double(short) * Double(w) / Double(h))
    }
    let left = Int((Double(rw - size) / 2).rounded(.toNearestOrEven))
    let top = Int((Double(rh - size) / 2).rounded(.toNearestOrEven))
    return (rw, rh, left, top)
}

/// Decoded RGB → (3, size, size) floats: resize/crop per `mode`, then ToTensor and Normalize
/// in float32, operation for operation as torchvision ((v/255 − mean)/std).
public func preprocess(_ img: DecodedImage, size: Int, mode: ResizeMode, path: String,
                       into out: UnsafeMutablePointer<Float>) throws {
    var im = img
    switch mode {
    case .none:
        guard img.width == size, img.height == size else {
            throw ImageError.wrongSize(path: path, width: img.width, height: img.height, expected: size)
        }
    case .timmEval:
        let g = timmEvalGeometry(width: img.width, height: img.height, size: size)
        if g.resizedW != img.width || g.resizedH != img.height {
            im = resizeBicubicPIL(img, width: g.resizedW, height: g.resizedH)
        }
        im = crop(im, left: g.left, top: g.top, width: size, height: size)
    }
    let plane = size * size
    im.pixels.withUnsafeBufferPointer { px in
        for c in 0..<3 {
            let m = Normalisation.mean[c], s = Normalisation.std[c]
            for i in 0..<plane { out[c * plane + i] = (Float(px[i * 3 + c]) / 255 - m) / s }
        }
    }
}

/// The images of a folder (docs/reference.md, "Definitions": images): searched recursively, PNG and JPEG by extension,
/// sorted by relative path (byte order, as Python's sorted()), symlink loops skipped.
public func listImages(in folder: String) throws -> [String] {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDir) else {
        throw ImageError.folder(path: folder, reason: "no such folder")
    }
    guard isDir.boolValue else { throw ImageError.folder(path: folder, reason: "not a folder") }
    var found: [(rel: String, full: String)] = []
    var seen = Set<String>()
    func walk(_ dir: String, _ rel: String) throws {
        let real = (dir as NSString).resolvingSymlinksInPath
        guard seen.insert(real).inserted else { return }  // a symlink loop or a second way in
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: dir) } catch {
            throw ImageError.folder(path: dir, reason: "cannot list folder")
        }
        for name in names where !name.hasPrefix(".") {
            let full = dir + "/" + name, r = rel.isEmpty ? name : rel + "/" + name
            var d: ObjCBool = false
            guard FileManager.default.fileExists(atPath: full, isDirectory: &d) else { continue }  // dangling link
            if d.boolValue {
                try walk(full, r)
            } else if ["png", "jpg", "jpeg"].contains((name as NSString).pathExtension.lowercased()) {
                found.append((r, full))
            }
        }
    }
    try walk(folder.hasSuffix("/") && folder.count > 1 ? String(folder.dropLast()) : folder, "")
    found.sort { Array($0.rel.utf8).lexicographicallyPrecedes(Array($1.rel.utf8)) }
    return found.map(\.full)
}

/// Loads images into a (B, 3, size, size) batch, decoding in parallel.
/// Returns, per image, nil on success or the error (the caller decides to fail or skip).
/// `parallel: false` decodes on the calling thread only (for a background prefetch).
public func loadBatch(_ paths: [String], size: Int, mode: ResizeMode, into batch: Tensor, parallel: Bool = true) -> [
    Error?] {
    loadBatch(items: paths.map { .file($0) }, size: size, mode: mode, into: batch, parallel: parallel)
}

public func loadBatch(items: [ImageItem], size: Int, mode: ResizeMode, into batch: Tensor, parallel: Bool = true) -> [
    Error?] {
    precondition(batch.shape == [items.count, 3, size, size])
    var errors = [Error?](repeating: nil, count: items.count)
    let lock = NSLock()
    let plane = 3 * size * size
    let run: (Int, (Range<Int>) -> Void) -> Void = parallel ? { n, f in parallelChunks(n, f) } : { n, f in f(0..<n) }
    run(items.count) { range in
        for i in range {
            do {
                let img = try items[i].decode()
                try preprocess(img, size: size, mode: mode, path: items[i].name, into: batch.data + i * plane)
            } catch {
                lock.lock(); errors[i] = error; lock.unlock()
            }
        }
    }
    return errors
}
