import CBLAS
import Foundation

// Dense float64 linear algebra (for the similarity measures), through OpenBLAS's BLAS and LAPACK.
// Matrices are row-major [Double] with their shape beside them; LAPACK (column-major) sees the
// transpose, which the wrappers account for.

/// A row-major float64 matrix.
public struct Matrix: Equatable {
    public var rows: Int, columns: Int
    public var values: [Double]

    public init(rows: Int, columns: Int, values: [Double]) {
        precondition(values.count == rows * columns)
        (self.rows, self.columns, self.values) = (rows, columns, values)
    }
    public init(zeros rows: Int, _ columns: Int) {
        self.init(rows: rows, columns: columns, values: [Double](repeating: 0, count: rows * columns))
    }
    public subscript(i: Int, j: Int) -> Double {
        get { values[i * columns + j] }
        set { values[i * columns + j] = newValue }
    }
    public var transposed: Matrix {
        var t = Matrix(zeros: columns, rows)
        for i in 0..<rows { for j in 0..<columns { t.values[j * rows + i] = values[i * columns + j] } }
        return t
    }
    public var trace: Double { (0..<min(rows, columns)).reduce(0) { $0 + values[$1 * columns + $1] } }
    public var frobeniusSquared: Double { values.reduce(0) { $0 + $1 * $1 } }
}

/// C = op(A)·op(B) (dgemm).
public func multiply(_ a: Matrix, _ b: Matrix, transA: Bool = false, transB: Bool = false) -> Matrix {
    let m = transA ? a.columns : a.rows, k = transA ? a.rows : a.columns
    let n = transB ? b.rows : b.columns
    precondition(k == (transB ? b.columns : b.rows), "inner dimensions differ")
    var c = Matrix(zeros: m, n)
    guard m > 0, n > 0, k > 0 else { return c }
    dgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a.values, lda: a.columns, b: b.values,
          ldb: b.columns, c: &c.values, ldc: n)
    return c
}

public enum LinearAlgebraError: Error, Equatable {
    /// LAPACK did not converge (or rejected an argument): the routine and its INFO.
    case lapack(routine: String, info: Int)
}

/// Eigenvalues (ascending) and, with `vectors`, eigenvectors as the columns of a row-major
/// matrix, of a symmetric matrix (dsyevd).
public func symmetricEigen(_ s: Matrix, vectors: Bool) throws -> (values: [Double], vectors: Matrix?) {
    precondition(s.rows == s.columns)
    var n = Int32(s.rows), lda = max(1, n), info: Int32 = 0
    guard n > 0 else { return ([], vectors ? s : nil) }
    var a = s.values  // symmetric: row-major = column-major
    var w = [Double](repeating: 0, count: s.rows)
    var lwork: Int32 = -1, liwork: Int32 = -1, wq = 0.0, iwq: Int32 = 0
    let jobz: [CChar] = [vectors ? 86 : 78, 0], uplo: [CChar] = [85, 0]  // "V"/"N", "U"
    dsyevd_(jobz, uplo, &n, &a, &lda, &w, &wq, &lwork, &iwq, &liwork, &info, 1, 1)
    lwork = Int32(wq); liwork = iwq
    var work = [Double](repeating: 0, count: Int(lwork)), iwork = [Int32](repeating: 0, count: Int(max(1, liwork)))
    dsyevd_(jobz, uplo, &n, &a, &lda, &w, &work, &lwork, &iwork, &liwork, &info, 1, 1)
    guard info == 0 else { throw LinearAlgebraError.lapack(routine: "dsyevd", info: Int(info)) }
    // Column-major eigenvectors: column j of the LAPACK output is a[j*n ..< (j+1)*n].
    return (w, vectors ? Matrix(rows: s.rows, columns: s.rows, values: a).transposed : nil)
}

/// Singular values (descending) and, with `vectors`, the thin U (rows × k) and Vᵀ (k × columns),
/// k = min(rows, columns) (dgesdd).
public func singularValues(_ m: Matrix, vectors: Bool) throws -> (values: [Double], u: Matrix?, vt: Matrix?) {
    let k = min(m.rows, m.columns)
    guard k > 0 else { return ([], nil, nil) }
    // LAPACK sees the row-major m as its transpose Mᵀ (columns × rows); Mᵀ = V S Uᵀ, so LAPACK's
    // U is our V and its Vᵀ our Uᵀ.
    var a = m.values
    var rows = Int32(m.columns), cols = Int32(m.rows), lda = max(1, rows), info: Int32 = 0
    var s = [Double](repeating: 0, count: k)
    var lu = vectors ? [Double](repeating: 0, count: m.columns * k) : [0]
    var lvt = vectors ? [Double](repeating: 0, count: k * m.rows) : [0]
    var ldu = vectors ? rows : 1, ldvt = vectors ? Int32(k) : 1
    var iwork = [Int32](repeating: 0, count: 8 * k), lwork: Int32 = -1, wq = 0.0
    let jobz: [CChar] = [vectors ? 83 : 78, 0]  // "S"/"N"
    dgesdd_(jobz, &rows, &cols, &a, &lda, &s, &lu, &ldu, &lvt, &ldvt, &wq, &lwork, &iwork, &info, 1)
    lwork = Int32(wq)
    var work = [Double](repeating: 0, count: Int(max(1, lwork)))
    dgesdd_(jobz, &rows, &cols, &a, &lda, &s, &lu, &ldu, &lvt, &ldvt, &work, &lwork, &iwork, &info, 1)
    guard info == 0 else { throw LinearAlgebraError.lapack(routine: "dgesdd", info: Int(info)) }
    guard vectors else { return (s, nil, nil) }
    // LAPACK's U: (columns × k) column-major = row-major (k × columns) = our Vᵀ.
    let vt = Matrix(rows: k, columns: m.columns, values: lu)
    // LAPACK's Vᵀ: (k × rows) column-major = row-major (rows × k) = our U.
    let u = Matrix(rows: m.rows, columns: k, values: lvt)
    return (s, u, vt)
}

/// The lower Cholesky factor L of a symmetric positive definite matrix (S = L·Lᵀ), or nil when
/// it is not positive definite.
public func cholesky(_ s: Matrix) -> Matrix? {
    precondition(s.rows == s.columns)
    var n = Int32(s.rows), lda = max(1, n), info: Int32 = 0
    var a = s.values
    // Row-major lower = column-major upper.
    let uplo: [CChar] = [85, 0]
    dpotrf_(uplo, &n, &a, &lda, &info, 1)
    guard info == 0 else { return nil }
    for i in 0..<s.rows { for j in (i + 1)..<max(i + 1, s.rows) { a[i * s.rows + j] = 0 } }
    return Matrix(rows: s.rows, columns: s.rows, values: a)
}

/// L⁻¹·B for a lower-triangular L (dtrsm), or with `right`, B·L⁻ᵀ.
public func solveLower(_ l: Matrix, _ b: Matrix, right: Bool = false) -> Matrix {
    var x = b
    guard b.rows > 0, b.columns > 0 else { return x }
    cblas_dtrsm(CblasRowMajor, right ? CblasRight : CblasLeft, CblasLower, right ? CblasTrans : CblasNoTrans,
                CblasNonUnit, blasint(b.rows), blasint(b.columns), 1, l.values, blasint(l.rows),
                &x.values, blasint(b.columns))
    return x
}
