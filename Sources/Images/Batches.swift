import Foundation
import VitLensCore

/// A batch as delivered: its index in the listing's batches, the normalised images and the
/// listing indices of the images it holds (fewer than listed when unreadable ones were skipped).
public struct ImageBatch {
    public let index: Int
    /// images: (B, 3, S, S), normalised.
    public let images: Tensor
    public let kept: [Int]
    public var count: Int { images.shape[0] }
}

/// The one image loader of every command: a listing decoded into normalised batches —
/// sequentially with the next batch decoded on a background thread (the analyses), by batch
/// index (shards), or any images by index with an in-memory cache (training, which visits the
/// same images every epoch).
public final class ImageBatches {
    public let items: [ImageItem]
    public let size: Int
    public let mode: ResizeMode
    public let batch: Int
    /// Unreadable images are skipped (reported to `onSkip`) instead of failing the run.
    public let skipBad: Bool
    /// Told of every image skipped as unreadable (the caller decides how to warn).
    public var onSkip: (Error) -> Void = { _ in }

    /// Training's cache: decoded images kept while they fit in `cacheBytes`.
    private var cache: Tensor?
    private var cached: [Bool] = []
    public static let cacheBytes = 1 << 30

    public init(items: [ImageItem], size: Int, mode: ResizeMode, batch: Int, skipBad: Bool = false) {
        self.items = items
        self.size = size
        self.mode = mode
        self.batch = max(1, batch)
        self.skipBad = skipBad
    }

    /// The first `num` images of a folder (searched recursively, sorted by relative path).
    public convenience init(folder: String, num: Int, size: Int, mode: ResizeMode, batch: Int, skipBad: Bool) throws {
        let all = try listImages(in: folder)
        guard !all.isEmpty else { throw ImageError.folder(path: folder, reason: "no PNG or JPEG images found") }
        self.init(items: all.prefix(num).map { .file($0) }, size: size, mode: mode, batch: batch, skipBad: skipBad)
    }

    /// The same settings over some of the images (listing indices, in the order given).
    public func subset(_ indices: [Int]) -> ImageBatches {
        let s = ImageBatches(items: indices.map { items[$0] }, size: size, mode: mode, batch: batch, skipBad: skipBad)
        s.onSkip = onSkip
        return s
    }

    public var names: [String] { items.map(\.name) }
    public var batchCount: Int { (items.count + batch - 1) / batch }

    /// Images listed for batch `index` (before any are skipped as unreadable).
    public func imageCount(ofBatch index: Int) -> Int { min(batch, items.count - index * batch) }

    /// Decodes batch `index`. Unreadable images are dropped with `skipBad`, else the first error
    /// is thrown. `parallel: false` decodes on the calling thread only (the background prefetch).
    public func load(batch index: Int, parallel: Bool = true) throws -> ImageBatch {
        let range = (index * batch)..<min(items.count, (index + 1) * batch)
        let list = Array(items[range])
        let t = Tensor(shape: [list.count, 3, size, size])
        let errors = loadBatch(items: list, size: size, mode: mode, into: t, parallel: parallel)
        guard let firstError = errors.compactMap({ $0 }).first else {
            return ImageBatch(index: index, images: t, kept: Array(range)) }
        guard skipBad else { throw firstError }
        let good = list.indices.filter { errors[$0] == nil }
        for case let e? in errors { onSkip(e) }
        let plane = 3 * size * size
        let g = Tensor(shape: [good.count, 3, size, size])
        for (k, i) in good.enumerated() { (g.data + k * plane).update(from: t.data + i * plane, count: plane) }
        return ImageBatch(index: index, images: g, kept: good.map { range.lowerBound + $0 })
    }

    /// Calls `body` for each batch index in order, decoding the next batch on a background
    /// thread while `body` runs on the current one (decoding then costs little beyond the
    /// cycles the forward pass leaves idle).
    public func forEach(batches indices: [Int], _ body: (ImageBatch) throws -> Void) throws {
        guard !indices.isEmpty else { return }
        let queue = DispatchQueue(label: "vitlens.prefetch")
        let ready = DispatchSemaphore(value: 0)
        final class Slot: @unchecked Sendable { var value: Result<ImageBatch, Error>? }
        let next = Slot()  // written by the prefetch, read after `ready` is signalled
        var current = Result { try load(batch: indices[0]) }
        for k in indices.indices {
            if k + 1 < indices.count {
                let i = indices[k + 1]
                queue.async {
                    next.value = Result { try self.load(batch: i, parallel: false) }
                    ready.signal()
                }
            }
            defer {
                if k + 1 < indices.count {
                    ready.wait()
                    current = next.value!
                }
            }
            try body(try current.get())
        }
    }

    /// Every batch in order.
    public func forEach(_ body: (ImageBatch) throws -> Void) throws {
        try forEach(batches: Array(0..<batchCount), body)
    }

    /// The listing indices of the images that decode (and have the model's size when resizing
    /// is off), for runs that must know N before the first forward pass; the others go to
    /// `onSkip`. Decodes every image once.
    public func readable() throws -> [Int] {
        var good: [Int] = []
        for (i, item) in items.enumerated() {
            do {
                let img = try item.decode()
                if mode == .none && (img.width != size || img.height != size) {
                    throw ImageError.wrongSize(path: item.name, width: img.width, height: img.height, expected: size)
                }
                good.append(i)
            } catch {
                onSkip(error)
            }
        }
        guard !good.isEmpty else {
            throw ImageError.folder(path: items.first?.name ?? "", reason: "no readable images") }
        return good
    }

    /// The images at listing `indices`, (n, 3, S, S): decoded once and then kept in memory
    /// while the whole listing fits in `cacheBytes`, decoded every time otherwise. An
    /// unreadable image is an error here (training needs every image it was given).
    public func images(at indices: [Int]) throws -> Tensor {
        let plane = 3 * size * size
        if cache == nil && cached.isEmpty {
            cached = [Bool](repeating: false, count: items.count)
            if items.count * plane * 4 <= Self.cacheBytes { cache = Tensor(shape: [items.count, 3, size, size]) }
        }
        let out = Tensor(shape: [indices.count, 3, size, size])
        guard let cache else {
            if let e = loadBatch(items: indices.map { items[$0] }, size: size, mode: mode, into: out).compactMap(
                { $0 }).first { throw e }
            return out
        }
        let missing = Array(Set(indices.filter { !cached[$0] })).sorted()
        if !missing.isEmpty {
            let t = Tensor(shape: [missing.count, 3, size, size])
            if let e = loadBatch(items: missing.map { items[$0] }, size: size, mode: mode, into: t).compactMap(
                { $0 }).first { throw e }
            for (k, i) in missing.enumerated() {
                (cache.data + i * plane).update(from: t.data + k * plane, count: plane); cached[i] = true }
        }
        for (k, i) in indices.enumerated() { (out.data + k * plane).update(from: cache.data + i * plane, count: plane) }
        return out
    }
}
