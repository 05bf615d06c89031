// Error types shared by every module. A moekit::Error is a problem with the user's input
// (bad file, bad flag, inconsistent checkpoint): main maps it to exit code 1. Anything else
// that escapes (InternalError, std::bad_alloc, ...) is a bug or an environment failure: exit 2.
#pragma once

#include <stdexcept>
#include <string>

namespace moekit {

// "[module] message": the module prefix tells the user which layer complained.
class Error : public std::runtime_error {
public:
    Error(const std::string& module, const std::string& message)
        : std::runtime_error("[" + module + "] " + message) {}
};

// A broken invariant inside moekit; never caused by user input alone.
class InternalError : public std::runtime_error {
public:
    InternalError(const std::string& module, const std::string& message)
        : std::runtime_error("[" + module + "] internal error: " + message) {}
};

}  // namespace moekit
