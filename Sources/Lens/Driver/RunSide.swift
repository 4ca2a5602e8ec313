import Foundation
import Images

/// An array computed elsewhere that can stand in for a model: its name and file, and what
/// reports record of it.
public protocol SideArray: AnyObject {
    var name: String { get }
    var path: String { get }
    var record: ArrayRecord { get }
    /// Rows: the images the array holds, in the order of the image listing.
    var images: Int { get }
}

extension FeatureFile: SideArray {}
extension AttentionFile: SideArray {}

/// One side of a run: a checkpoint run on the images, or an array of the same images' rows
/// computed elsewhere (features for CKA, attention probabilities for attention statistics).
public enum RunSide<Array: SideArray> {
    case model(AnalysisModel)
    case array(Array)

    public var name: String {
        switch self { case let .model(m): return m.name; case let .array(a): return a.name }
    }
    var path: String {
        switch self { case let .model(m): return m.request.path; case let .array(a): return a.path }
    }
    var record: SideRecord {
        switch self { case let .model(m): return .model(m.record); case let .array(a): return .array(a.record) }
    }
    var model: AnalysisModel? { if case let .model(m) = self { return m }; return nil }
    var array: Array? { if case let .array(a) = self { return a }; return nil }
}

/// A side of a CKA run: a model, or features [L, N, T, D] / [L, N, D].
public typealias CKASide = RunSide<FeatureFile>
/// A side of an attention run: a model, or attention probabilities [L, N, H, T, T].
public typealias AttentionSide = RunSide<AttentionFile>

/// The number of images every side of a run covers: the folder's, else the arrays' rows, which
/// must agree (the rows are taken to be the same images in the same order).
func commonImageCount<A>(_ sides: [RunSide<A>], images: ImageBatches?, kind: LensError.ArrayKind) throws -> Int {
    let arrays = sides.compactMap(\.array)
    guard arrays.count == sides.count || images != nil else { throw LensError.modelNeedsImages }
    let n = images?.items.count ?? arrays[0].images
    for a in arrays where a.images != n {
        throw LensError.rowCountMismatch(path: a.path, kind: kind, rows: a.images,
                                         other: images == nil ? arrays[0].path : nil, otherRows: n)
    }
    if !arrays.isEmpty && images?.skipBad == true { throw LensError.skippingMisalignsRows(path: arrays[0].path) }
    return n
}
