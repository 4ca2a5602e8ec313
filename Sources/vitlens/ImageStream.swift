import Foundation
import Images
import VitLensCore

/// The images of a run, listed once and delivered as normalised batches.
struct ImageStream {
    let paths: [String]
    let size: Int
    let mode: ResizeMode
    let batch: Int
    let skipBad: Bool

    init(_ opts: ImageOptions, size: Int) throws {
        let all = try listImages(in: opts.images)
        guard !all.isEmpty else { throw ImageError.folder(path: opts.images, reason: "no PNG or JPEG images found") }
        paths = Array(all.prefix(opts.num))
        self.size = size
        mode = opts.resize
        batch = opts.batch
        skipBad = opts.skipBadImages
    }

    /// With --skip-bad-images, the images that decode (checked up front so that N and every
    /// output shape are known before the first forward pass); otherwise all of them.
    func usable() throws -> [String] {
        guard skipBad else { return paths }
        var good: [String] = []
        for p in paths {
            do {
                let img = try DecodedImage.load(path: p)
                if mode == .none && (img.width != size || img.height != size) {
                    throw ImageError.wrongSize(path: p, width: img.width, height: img.height, expected: size)
                }
                good.append(p)
            } catch {
                warning("skipping \(error)")
            }
        }
        guard !good.isEmpty else { throw ImageError.folder(path: paths.first ?? "", reason: "no readable images") }
        return good
    }

    /// Calls `body(batchTensor, firstIndex)` for consecutive batches of `list`.
    func forEachBatch(_ list: [String], _ body: (Tensor, Int) throws -> Void) throws {
        var start = 0
        var tensor: Tensor?
        while start < list.count {
            let n = min(batch, list.count - start)
            if tensor?.shape[0] != n { tensor = Tensor(shape: [n, 3, size, size]) }
            let errors = loadBatch(Array(list[start..<(start + n)]), size: size, mode: mode, into: tensor!)
            if let e = errors.compactMap({ $0 }).first { throw e }
            try body(tensor!, start)
            start += n
        }
    }
}
