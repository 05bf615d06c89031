// A `moekit run` recipe: a named list of steps (profile, prune, merge, svd, quantize, eval) with
// the same options as the subcommands, and assertions on the metrics they report.
//
//   name: demo-75                      # runs/<name>/ (default: the file's stem)
//   model: assets/demo-moe             # the original checkpoint (relative to the recipe file)
//   calib: assets/corpus/train/en.txt  # --calib of prune/merge/svd/gptq, --data of profile
//   data: assets/corpus/eval/en.txt    # --data of eval
//   corpus: {seq_len: 128}             # corpus flags every model-running step gets
//   steps:
//     - profile: {}
//     - prune: {method: reap, keep: 0.75}
//     - eval:
//         assert: [ppl_ratio <= 1.10]  # metrics of this step
//   assert:
//     - eval.ppl_ratio <= 1.10         # <step>.<metric or report path>
//
// YAML via yaml-cpp; a JSON recipe is read by the same parser (JSON is YAML's flow syntax).
// Every error is Error("recipe", "FILE:LINE: ...") naming the key.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace moekit::pipeline {

// One option of a step as command-line arguments, with the recipe line it came from:
//   keep: 0.75        -> {"--keep", "0.75"}
//   dry_run: true     -> {"--dry-run"};  align: false -> {"--align=false"}
//   data: [a, b]      -> {"--data", "a,b"};  data: {en: a, code: b} -> {"--data", "en=a,code=b"}
struct StepOption {
    std::string key;                    // as the flag spells it ("dry-run")
    std::vector<std::string> args;
    int line = 0;
};

// "<metric> <op> <number>", op one of <= < >= > == !=.
struct Assertion {
    std::string text;
    std::string metric;
    std::string op;
    double value = 0;
    int line = 0;
    bool holds(double measured) const;
};

struct Step {
    std::string kind;                   // profile | prune | merge | svd | quantize | eval
    std::string name;                   // unique; default: the kind (kind-2, kind-3 for repeats)
    int line = 0;
    std::optional<std::string> input;   // a step name, "model", or a path; default: the latest model
    std::optional<std::string> ref;     // eval only: a step name, "model", a path or "none"
    std::vector<StepOption> options;
    std::vector<Assertion> asserts;     // metric paths relative to this step
};

struct Recipe {
    std::filesystem::path file;
    std::string name;
    std::filesystem::path model;        // resolved against the recipe's directory
    int model_line = 0;
    std::optional<std::string> calib;   // data sources, paths resolved against the recipe's directory
    std::optional<std::string> data;
    std::vector<StepOption> corpus;     // --seq-len, --max-tokens, ... for every model-running step
    std::vector<Step> steps;
    std::vector<Assertion> asserts;     // "<step>.<path>"

    std::string where(int line) const;  // "FILE:LINE"
};

inline const std::vector<std::string>& step_kinds() {
    static const std::vector<std::string> kinds{"profile", "prune", "merge", "svd", "quantize", "eval"};
    return kinds;
}

// Throws Error("recipe") naming the file, line and key for unreadable or malformed recipes.
Recipe parse_recipe(const std::filesystem::path& file);

// Throws Error("recipe", "<where>: ...") for a malformed assertion.
Assertion parse_assertion(const std::string& text, int line, const std::string& where);

}  // namespace moekit::pipeline
