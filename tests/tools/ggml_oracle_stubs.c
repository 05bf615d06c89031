/* The few ggml.c symbols ggml-quants.c references, for the test oracle that links only
 * ggml-quants.c (tests/CMakeLists.txt). The reference quantizers the tests call never reach
 * them; if one does, the test aborts loudly. */
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>

void ggml_abort(const char* file, int line, const char* fmt, ...) {
    fprintf(stderr, "ggml oracle abort at %s:%d (%s)\n", file, line, fmt);
    abort();
}
size_t ggml_row_size(int type, int64_t ne) { (void)type; (void)ne; ggml_abort(__FILE__, __LINE__, "ggml_row_size"); return 0; }
const char* ggml_type_name(int type) { (void)type; return "?"; }
size_t ggml_type_size(int type) { (void)type; ggml_abort(__FILE__, __LINE__, "ggml_type_size"); return 0; }
