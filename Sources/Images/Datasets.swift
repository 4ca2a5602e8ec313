import Foundation
import VitLensCore

/// One image of a labelled dataset: a file, or a record of a CIFAR binary batch file.
public enum ImageItem: @unchecked Sendable {
    case file(String)
    case record(CIFARFile, Int)

    /// The file path, or `file#record` for a CIFAR record (for messages and the report).
    public var name: String {
        switch self {
        case let .file(p): return p
        case let .record(f, i): return "\(f.path)#\(i)"
        }
    }

    public func decode() throws -> DecodedImage {
        switch self {
        case let .file(p): return try DecodedImage.load(path: p)
        case let .record(f, i): return f.image(i)
        }
    }
}

/// Images with class labels 0..<classes.count.
public struct LabeledImages: Sendable {
    public var items: [ImageItem]
    public var labels: [Int]
    public var classes: [String]
    /// Where the set came from (a folder, or "DIR (CIFAR-10 train)"), for messages.
    public var source: String

    public init(items: [ImageItem], labels: [Int], classes: [String], source: String) {
        self.items = items; self.labels = labels; self.classes = classes; self.source = source
    }

    public var count: Int { items.count }

    public func subset(_ indices: [Int]) -> LabeledImages {
        LabeledImages(
            items: indices.map { items[$0] }, labels: indices.map { labels[$0] }, classes: classes, source: source)
    }

    /// At most `n` images, taken round-robin over the classes in listing order, so every class
    /// keeps its share (for `--limit-train` / `--limit-test`).
    public func balancedPrefix(_ n: Int) -> LabeledImages {
        guard n < count else { return self }
        var perClass = [[Int]](repeating: [], count: classes.count)
        for (i, l) in labels.enumerated() { perClass[l].append(i) }
        var chosen: [Int] = [], round = 0
        while chosen.count < n {
            var any = false
            for c in perClass.indices where round < perClass[c].count && chosen.count < n {
                chosen.append(perClass[c][round]); any = true
            }
            if !any { break }
            round += 1
        }
        return subset(chosen.sorted())
    }

    /// Images per class.
    public var classCounts: [Int] {
        var n = [Int](repeating: 0, count: classes.count)
        for l in labels { n[l] += 1 }
        return n
    }
}

/// An ImageFolder (torchvision's layout): classes are the first-level subfolders, sorted by
/// name (byte order, as Python's sorted()); each class's images are found recursively inside
/// its folder. Files directly in `dir` belong to no class and are ignored, as torchvision does.
public func imageFolderDataset(_ dir: String) throws -> LabeledImages {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) else {
        throw ImageError.folder(path: dir, reason: "no such folder") }
    guard isDir.boolValue else { throw ImageError.folder(path: dir, reason: "not a folder") }
    let root = dir.count > 1 && dir.hasSuffix("/") ? String(dir.dropLast()) : dir
    let names: [String]
    do { names = try FileManager.default.contentsOfDirectory(atPath: root) } catch {
        throw ImageError.folder(path: root, reason: "cannot list folder")
    }
    let classes = names.filter { name in
        var d: ObjCBool = false
        return !name.hasPrefix(".") && FileManager.default.fileExists(atPath: root + "/" + name, isDirectory: &d)
            && d.boolValue
    }.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
    guard classes.count >= 2 else {
        throw ImageError.folder(
            path: root,
            reason: "needs at least 2 class subfolders (ImageFolder layout: DIR/<class>/<image>), found "
            + "\(classes.count)")
    }
    var items: [ImageItem] = [], labels: [Int] = []
    for (k, c) in classes.enumerated() {
        let files = try listImages(in: root + "/" + c)
        guard !files.isEmpty else {
            throw ImageError.folder(path: root + "/" + c, reason: "class folder has no PNG or JPEG images") }
        items += files.map { .file($0) }
        labels += [Int](repeating: k, count: files.count)
    }
    return LabeledImages(items: items, labels: labels, classes: classes, source: root)
}

/// The test set relabelled with the train set's class indices. The class sets must be equal:
/// a class missing from the test set, or one the train set does not know, is an error.
public func aligned(test: LabeledImages, to train: LabeledImages) throws -> LabeledImages {
    let unknown = test.classes.filter { !train.classes.contains($0) }
    guard unknown.isEmpty else {
        throw ImageError.folder(
            path: test.source,
            reason: "class(es) not in the train set \(train.source): \(unknown.prefix(5).joined(separator: ", "))")
    }
    let missing = train.classes.filter { !test.classes.contains($0) }
    guard missing.isEmpty else {
        throw ImageError.folder(
            path: test.source,
            reason: "no test images for class(es) of the train set: \(missing.prefix(5).joined(separator: ", "))")
    }
    let map = test.classes.map { train.classes.firstIndex(of: $0)! }
    return LabeledImages(
        items: test.items, labels: test.labels.map { map[$0] }, classes: train.classes, source: test.source)
}

/// A seeded split of each class (stratified): ⌊n·fraction + ½⌋ of a class's images, at least one
/// and at most n − 1, go to the test set. Same seed, same split on every machine.
public func stratifiedSplit(_ set: LabeledImages, testFraction: Double, seed: UInt64) throws -> (
    train: LabeledImages, test: LabeledImages) {
    var perClass = [[Int]](repeating: [], count: set.classes.count)
    for (i, l) in set.labels.enumerated() { perClass[l].append(i) }
    var rng = SplitMix64(seed: seed)
    var train: [Int] = [], test: [Int] = []
    for (c, idx) in perClass.enumerated() {
        guard idx.count >= 2 else {
            throw ImageError.folder(
                path: set.source + "/" + set.classes[c],
                reason: "a stratified split needs at least 2 images per class, found \(idx.count)")
        }
        var shuffled = idx
        for i in stride(from: shuffled.count - 1, to: 0, by: -1) { shuffled.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        let nTest = min(idx.count - 1, max(1, Int((Double(idx.count) * testFraction).rounded())))
        test += shuffled.prefix(nTest)
        train += shuffled.dropFirst(nTest)
    }
    return (set.subset(train.sorted()), set.subset(test.sorted()))
}

// MARK: CIFAR

public enum CIFARKind: String, Sendable {
    case cifar10 = "CIFAR-10", cifar100 = "CIFAR-100"
}

/// A CIFAR binary batch file, mapped: records of label byte(s) then 3072 bytes of 32×32 pixels,
/// planes R, G, B, rows top to bottom (https://www.cs.toronto.edu/~kriz/cifar.html).
public final class CIFARFile: @unchecked Sendable {
    public let path: String
    let file: MappedFile
    let labelBytes: Int
    public let records: Int
    static let pixels = 3072

    init(path: String, kind: CIFARKind) throws {
        self.path = path
        do { file = try MappedFile(path: path) } catch {
            throw ImageError.folder(path: path, reason: "cannot read CIFAR batch file (\(error))") }
        labelBytes = kind == .cifar10 ? 1 : 2
        let size = labelBytes + CIFARFile.pixels
        guard file.count > 0, file.count % size == 0 else {
            throw ImageError.folder(
                path: path,
                reason: "\(file.count) bytes is not a whole number of \(size)-byte \(kind.rawValue) records")
        }
        records = file.count / size
    }

    /// The fine label (CIFAR-100's second byte).
    func label(_ i: Int) -> Int { Int(file.all[i * (labelBytes + CIFARFile.pixels) + labelBytes - 1]) }

    func image(_ i: Int) -> DecodedImage {
        let base = i * (labelBytes + CIFARFile.pixels) + labelBytes
        var px = [UInt8](repeating: 0, count: CIFARFile.pixels)
        let b = file.all
        for p in 0..<1024 {
            px[3 * p] = b[base + p]; px[3 * p + 1] = b[base + 1024 + p]; px[3 * p + 2] = b[base + 2048 + p]
        }
        return DecodedImage(width: 32, height: 32, pixels: px)
    }
}

/// CIFAR-10 (`data_batch_1.bin`…`data_batch_5.bin`, `test_batch.bin`, `batches.meta.txt`) or
/// CIFAR-100 (`train.bin`, `test.bin`, `fine_label_names.txt`) from the binary distribution,
/// given its folder (or the folder holding `cifar-10-batches-bin` / `cifar-100-binary`).
public func cifarDataset(_ dir: String, kind: CIFARKind, train: Bool) throws -> LabeledImages {
    let fm = FileManager.default
    var root = dir.count > 1 && dir.hasSuffix("/") ? String(dir.dropLast()) : dir
    let sub = kind == .cifar10 ? "cifar-10-batches-bin" : "cifar-100-binary"
    if fm.fileExists(atPath: root + "/" + sub) { root += "/" + sub }
    let files: [String]
    let namesFile: String
    switch kind {
    case .cifar10:
        files = train ? (1...5).map { "data_batch_\($0).bin" } : ["test_batch.bin"]
        namesFile = "batches.meta.txt"
    case .cifar100:
        files = [train ? "train.bin" : "test.bin"]
        namesFile = "fine_label_names.txt"
    }
    let count = kind == .cifar10 ? 10 : 100
    var classes = (0..<count).map { "class_\($0)" }
    if let text = try? String(contentsOfFile: root + "/" + namesFile, encoding: .utf8) {
        let names = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter {
            !$0.isEmpty }
        guard names.count == count else {
            throw ImageError.folder(
                path: root + "/" + namesFile, reason: "\(names.count) class names, \(kind.rawValue) has \(count)")
        }
        classes = names
    }
    var items: [ImageItem] = [], labels: [Int] = []
    for name in files {
        let path = root + "/" + name
        guard fm.fileExists(atPath: path) else {
            throw ImageError.folder(
                path: root,
                reason: "no \(name): not a \(kind.rawValue) binary folder (expected \(files.joined(separator: ", ")))")
        }
        let f = try CIFARFile(path: path, kind: kind)
        for i in 0..<f.records {
            let l = f.label(i)
            guard l < count else {
                throw ImageError.folder(
                path: path, reason: "record \(i) has label \(l), \(kind.rawValue) has \(count) classes") }
            items.append(.record(f, i))
            labels.append(l)
        }
    }
    return LabeledImages(
        items: items, labels: labels, classes: classes,
        source: "\(root) (\(kind.rawValue) \(train ? "train" : "test"))")
}
