// Dense linear algebra on the GPU (cuSOLVER), the device counterparts of core/linalg.h. Its own
// header (not cuda/backend.h) because it brings Eigen, which the .cu files do not include.
#pragma once

#include "core/linalg.h"

namespace moekit::backend {

// Thin SVD A = U diag(s) Vt (s descending, U [m, k], Vt [k, n], k = min(m, n)) of a column-major
// double matrix on GPU `device` with cuSOLVER's gesvd; the CPU reference is core::svd (LAPACK
// gesdd), equal up to the signs of singular-vector pairs. Thread-safe (calls are serialized).
// Throws Error("cuda") when no GPU is usable or cuSOLVER fails.
core::Svd<double> cuda_svd(int device, const core::MatrixC<double>& a);

}  // namespace moekit::backend
