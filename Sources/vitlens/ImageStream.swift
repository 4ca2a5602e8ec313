import Foundation
import Images
import VitLensCore

/// The images of a run, listed once and delivered as normalised batches.
struct ImageStream {
    let items: [ImageItem]
    var paths: [String] { items.map(\.name) }
    let size: Int
    let mode: ResizeMode
    let batch: Int
    let skipBad: Bool

    init(_ opts: ImageOptions, size: Int) throws {
        let all = try listImages(in: opts.images)
        guard !all.isEmpty else { throw ImageError.folder(path: opts.images, reason: "no PNG or JPEG images found") }
        items = all.prefix(opts.num).map { .file($0) }
        self.size = size
        mode = opts.resize
        batch = opts.batch
        skipBad = opts.skipBadImages
    }

    /// A labelled dataset's images (`vitlens probe`).
    init(items: [ImageItem], size: Int, mode: ResizeMode, batch: Int, skipBad: Bool) {
        self.items = items
        self.size = size
        self.mode = mode
        self.batch = batch
        self.skipBad = skipBad
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

    var batchCount: Int { (items.count + batch - 1) / batch }

    /// Images listed for batch `index` (before any are skipped as unreadable).
    func imageCount(ofBatch index: Int) -> Int { min(batch, items.count - index * batch) }

    /// The batch indices a run handles: all, or those of one shard (SPEC §10).
    func batches(for shard: ShardSpec?) -> [Int] {
        guard let shard else { return Array(0..<batchCount) }
        return (0..<batchCount).filter(shard.owns)
    }

    /// Loads batch `index` of the listing. With --skip-bad-images, images that fail to decode
    /// are dropped from the batch with a warning; otherwise the first failure is thrown.
    func load(batch index: Int, parallel: Bool = true) throws -> (tensor: Tensor, kept: [Int]) {
        let range = (index * batch)..<min(items.count, (index + 1) * batch)
        let list = Array(items[range])
        let t = Tensor(shape: [list.count, 3, size, size])
        let errors = loadBatch(items: list, size: size, mode: mode, into: t, parallel: parallel)
        guard let firstError = errors.compactMap({ $0 }).first else { return (t, Array(range)) }
        guard skipBad else { throw firstError }
        let good = list.indices.filter { errors[$0] == nil }
        for case let e? in errors { warning("skipping \(e)") }
        let plane = 3 * size * size
        let g = Tensor(shape: [good.count, 3, size, size])
        for (k, i) in good.enumerated() { (g.data + k * plane).update(from: t.data + i * plane, count: plane) }
        return (g, good.map { range.lowerBound + $0 })
    }

    /// Calls `body(index, batch)` for each batch index in order, decoding the next batch on a
    /// background thread while `body` runs on the current one (decoding then costs little
    /// beyond the cycles the forward pass leaves idle).
    func forEach(batches indices: [Int], _ body: (Int, Tensor) throws -> Void) throws {
        try forEachKept(batches: indices) { index, x, _ in try body(index, x) }
    }

    /// As `forEach`, also passing the listing indices of the images in the batch (those that
    /// decoded, with --skip-bad-images).
    func forEachKept(batches indices: [Int], _ body: (Int, Tensor, [Int]) throws -> Void) throws {
        guard !indices.isEmpty else { return }
        let queue = DispatchQueue(label: "vitlens.prefetch")
        var next: Result<(tensor: Tensor, kept: [Int]), Error>?
        let ready = DispatchSemaphore(value: 0)
        func prefetch(_ i: Int) {
            queue.async {
                next = Result { try self.load(batch: i, parallel: false) }
                ready.signal()
            }
        }
        var current = Result { try load(batch: indices[0]) }
        for (k, index) in indices.enumerated() {
            if k + 1 < indices.count { prefetch(indices[k + 1]) }
            defer {
                if k + 1 < indices.count {
                    ready.wait()
                    current = next!
                }
            }
            let loaded = try current.get()
            try body(index, loaded.tensor, loaded.kept)
        }
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
