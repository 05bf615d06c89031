# Dependencies of the tokenizer (io/tokenizer*.cpp): PCRE2 for the pre-tokenizer regexes
# (UTF + UCP, JIT) and ICU (common library) for NFC/NFKC/NFD/NFKD, case mapping and Unicode
# character properties. Debian: libpcre2-dev, libicu-dev.
# Included from the top-level CMakeLists.txt right after moekit_module(io ...).
find_package(PkgConfig REQUIRED)
pkg_check_modules(MOEKIT_PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
find_package(ICU 66 REQUIRED COMPONENTS uc)
target_link_libraries(moekit_io PRIVATE PkgConfig::MOEKIT_PCRE2 ICU::uc)
