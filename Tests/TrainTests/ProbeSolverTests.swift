import Foundation
import TestSupport
import Train
import XCTest

/// The linear probe's standardisation and solver against scikit-learn (Tests/Fixtures/
/// make_probe_goldens.py: StandardScaler + LogisticRegression(C=1) to tol 1e-12).
final class ProbeSolverTests: XCTestCase {
    struct Case {
        let k, d: Int
        let xTrain, xTest: [Float]
        let yTrain, yTest, predictions: [Int]
        let mean, scale, coef, intercept: [Double]
        let trainAcc, testAcc: Double
    }

    func cases() throws -> [Case] {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.golden("probe_solver.json")))
        let root = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        return (root["cases"] as! [[String: Any]]).map { c in
            func d(_ k: String) -> [Double] { (c[k] as! [NSNumber]).map(\.doubleValue) }
            func i(_ k: String) -> [Int] { (c[k] as! [NSNumber]).map(\.intValue) }
            return Case(
                k: c["classes"] as! Int, d: c["features"] as! Int, xTrain: d("x_train").map(Float.init),
                xTest: d("x_test").map(Float.init),
                        yTrain: i("y_train"), yTest: i("y_test"), predictions: i("test_predictions"),
                        mean: d("scaler_mean"), scale: d("scaler_scale"), coef: d("coef"), intercept: d("intercept"),
                        trainAcc: (c["train_accuracy"] as! NSNumber).doubleValue,
                            testAcc: (c["test_accuracy"] as! NSNumber).doubleValue)
        }
    }

    func testStandardizerMatchesStandardScaler() throws {
        for c in try cases() {
            let s = Standardizer(fitting: c.xTrain, rows: c.yTrain.count, cols: c.d)
            let cm = compare(s.mean, c.mean, tolerance: 1e-12), cs = compare(s.scale, c.scale, tolerance: 1e-12)
            XCTAssertEqual(cm.violations, 0, "mean: \(cm)")
            XCTAssertEqual(cs.violations, 0, "scale: \(cs)")
        }
    }

    /// Coefficients within 1e-5 (relative to max(1, |ref|)) of scikit-learn's, accuracies and
    /// test predictions identical: the same convex problem solved to convergence.
    func testLogisticRegressionMatchesScikitLearn() throws {
        for c in try cases() {
            let n = c.yTrain.count, nt = c.yTest.count
            let s = Standardizer(fitting: c.xTrain, rows: n, cols: c.d)
            let xtr = s.transform(c.xTrain, rows: n), xte = s.transform(c.xTest, rows: nt)
            let m = LogisticRegression.fit(xtr, labels: c.yTrain, rows: n, cols: c.d, classes: c.k)
            XCTAssertTrue(
                m.solver.converged, "solver: \(m.solver.iterations) iterations, max|∇| \(m.solver.gradientMax)")
            let cw = compare(m.weights, c.coef, tolerance: 1e-5), cb = compare(m.bias, c.intercept, tolerance: 1e-5)
            XCTAssertEqual(cw.violations, 0, "\(c.k) classes, weights: \(cw)")
            XCTAssertEqual(cb.violations, 0, "\(c.k) classes, intercepts: \(cb)")
            XCTAssertEqual(LogisticRegression.accuracy(m.predict(xtr, rows: n), c.yTrain), c.trainAcc, accuracy: 1e-12)
            XCTAssertEqual(LogisticRegression.accuracy(m.predict(xte, rows: nt), c.yTest), c.testAcc, accuracy: 1e-12)
            XCTAssertEqual(m.predict(xte, rows: nt), c.predictions)
        }
    }

    /// L-BFGS on the Rosenbrock function: the minimum at (1, 1) from the textbook start.
    func testLBFGSRosenbrock() {
        let r = lbfgs([-1.2, 1], gtol: 1e-9, maxIterations: 500) { x, g in
            let a = 1 - x[0], b = x[1] - x[0] * x[0]
            g[0] = -2 * a - 400 * x[0] * b
            g[1] = 200 * b
            return a * a + 100 * b * b
        }
        XCTAssertTrue(r.converged)
        XCTAssertEqual(r.x[0], 1, accuracy: 1e-7)
        XCTAssertEqual(r.x[1], 1, accuracy: 1e-7)
    }
}
