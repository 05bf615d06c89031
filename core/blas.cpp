// See core/blas.h.
#include "core/blas.h"

extern "C" void openblas_set_num_threads(int num_threads);

namespace moekit::core {

void use_single_threaded_blas() { openblas_set_num_threads(1); }

}  // namespace moekit::core
