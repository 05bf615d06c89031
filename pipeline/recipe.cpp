// Recipe parsing (recipe.h) with yaml-cpp; every node keeps its line for the error messages.
#include "pipeline/recipe.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>

#include <yaml-cpp/yaml.h>

#include "core/error.h"

namespace moekit::pipeline {
namespace fs = std::filesystem;

namespace {

int line_of(const YAML::Node& node) { return node.Mark().line + 1; }

class Parser {
public:
    explicit Parser(Recipe& recipe) : r_(recipe) {}

    [[noreturn]] void fail(int line, const std::string& message) const {
        throw Error("recipe", r_.where(line) + ": " + message);
    }

    std::string scalar(const YAML::Node& node, const std::string& key) const {
        if (!node.IsScalar()) fail(line_of(node), "'" + key + "' must be a single value");
        return node.Scalar();
    }

    // A data-source list (FILE[,FILE...] or DOMAIN=FILE[,...]) with relative paths resolved
    // against the recipe's directory; YAML lists and maps are accepted too.
    std::string sources(const YAML::Node& node, const std::string& key) const {
        std::vector<std::pair<std::string, std::string>> items;  // domain (may be empty), path
        auto add_text = [&](const std::string& text) {
            size_t at = 0;
            while (at <= text.size()) {
                const size_t comma = std::min(text.find(',', at), text.size());
                const std::string item = text.substr(at, comma - at);
                if (!item.empty()) {
                    const size_t eq = item.find('=');
                    if (eq == std::string::npos) items.emplace_back("", item);
                    else items.emplace_back(item.substr(0, eq), item.substr(eq + 1));
                }
                at = comma + 1;
            }
        };
        if (node.IsScalar()) add_text(node.Scalar());
        else if (node.IsSequence())
            for (const auto& item : node) add_text(scalar(item, key));
        else if (node.IsMap())
            for (const auto& kv : node) items.emplace_back(scalar(kv.first, key), scalar(kv.second, key));
        else fail(line_of(node), "'" + key + "' must be a file list");
        if (items.empty()) fail(line_of(node), "'" + key + "' names no file");
        std::string out;
        for (const auto& [domain, path] : items) {
            if (!out.empty()) out += ",";
            if (!domain.empty()) out += domain + "=";
            out += resolve(path).string();
        }
        return out;
    }

    fs::path resolve(const std::string& path) const {
        const fs::path p(path);
        return p.is_absolute() ? p : (r_.file.parent_path() / p).lexically_normal();
    }

    // A model reference: a step name or "model" stays as written, anything else is a path.
    std::string model_ref(const YAML::Node& node, const std::string& key, const std::set<std::string>& names) const {
        const std::string v = scalar(node, key);
        if (v == "model" || v == "none" || names.count(v) != 0) return v;
        return resolve(v).string();
    }

    StepOption option(const std::string& key, const YAML::Node& value) const {
        StepOption o;
        o.key = key;
        std::replace(o.key.begin(), o.key.end(), '_', '-');
        o.line = line_of(value);
        const std::string flag = "--" + o.key;
        if (key == "calib" || key == "data") {
            o.args = {flag, sources(value, key)};
        } else if (value.IsScalar()) {
            const std::string v = value.Scalar();
            if (value.Tag() != "!" && (v == "true" || v == "false")) o.args = {v == "true" ? flag : flag + "=false"};
            else o.args = {flag, v};
        } else if (value.IsSequence()) {
            std::string joined;
            for (const auto& item : value) joined += (joined.empty() ? "" : ",") + scalar(item, key);
            o.args = {flag, joined};
        } else if (value.IsMap()) {
            std::string joined;
            for (const auto& kv : value)
                joined += (joined.empty() ? "" : ",") + scalar(kv.first, key) + "=" + scalar(kv.second, key);
            o.args = {flag, joined};
        } else {
            fail(o.line, "'" + key + "' has no value");
        }
        return o;
    }

    std::vector<Assertion> asserts(const YAML::Node& node) const {
        std::vector<Assertion> out;
        if (node.IsScalar()) {
            out.push_back(parse_assertion(node.Scalar(), line_of(node), r_.where(line_of(node))));
            return out;
        }
        if (!node.IsSequence()) fail(line_of(node), "'assert' must be a list of \"<metric> <op> <number>\"");
        for (const auto& item : node) {
            const std::string text = scalar(item, "assert");
            out.push_back(parse_assertion(text, line_of(item), r_.where(line_of(item))));
        }
        return out;
    }

    Step step(const YAML::Node& node, std::map<std::string, int>& kind_count, const std::set<std::string>& earlier) {
        const int line = line_of(node);
        if (!node.IsMap() || node.size() != 1)
            fail(line, "each step is one '<kind>: {options}' entry (kinds: profile, prune, merge, svd, quantize, eval)");
        const auto kv = *node.begin();
        Step s;
        s.kind = scalar(kv.first, "step");
        s.line = line_of(kv.first);
        const auto& kinds = step_kinds();
        if (std::find(kinds.begin(), kinds.end(), s.kind) == kinds.end())
            fail(s.line, "unknown step '" + s.kind + "' (kinds: profile, prune, merge, svd, quantize, eval)");
        const int n = ++kind_count[s.kind];
        s.name = n == 1 ? s.kind : s.kind + "-" + std::to_string(n);
        const YAML::Node body = kv.second;
        if (!body.IsNull() && !body.IsMap()) fail(line_of(body), "the options of step '" + s.kind + "' must be a mapping");
        if (body.IsNull()) return s;
        for (const auto& opt : body) {
            const std::string key = scalar(opt.first, "key");
            const int kline = line_of(opt.first);
            if (key == "name") {
                s.name = scalar(opt.second, key);
                if (s.name.empty() || s.name.find_first_of("/\\. ") != std::string::npos || s.name == "model" ||
                    s.name == "none")
                    fail(kline, "step name '" + s.name + "' must be a plain word (not 'model' or 'none')");
            } else if (key == "input") {
                s.input = model_ref(opt.second, key, earlier);
            } else if (key == "ref") {
                if (s.kind != "eval") fail(kline, "'ref' belongs to eval steps");
                s.ref = model_ref(opt.second, key, earlier);
            } else if (key == "assert") {
                s.asserts = asserts(opt.second);
            } else if (key == "output" || key == "o" || key == "force" || key == "json" || key == "save-trace" ||
                       key == "save_trace") {
                fail(kline, "step '" + s.name + "': '" + key + "' is set by moekit run (outputs go to runs/<name>/)");
            } else if (key == "MODEL_DIR" || key == "model") {
                fail(kline, "step '" + s.name + "': use 'input' for the model a step reads");
            } else {
                s.options.push_back(option(key, opt.second));
                s.options.back().line = kline;
            }
        }
        return s;
    }

private:
    Recipe& r_;
};

}  // namespace

std::string Recipe::where(int line) const { return file.string() + ":" + std::to_string(line); }

bool Assertion::holds(double v) const {
    if (std::isnan(v)) return false;
    if (op == "<=") return v <= value;
    if (op == "<") return v < value;
    if (op == ">=") return v >= value;
    if (op == ">") return v > value;
    if (op == "==") return v == value;
    return v != value;
}

Assertion parse_assertion(const std::string& text, int line, const std::string& where) {
    static const char* const ops[] = {"<=", ">=", "==", "!=", "<", ">"};
    Assertion a;
    a.text = text;
    a.line = line;
    size_t at = std::string::npos;
    for (const char* op : ops) {
        const size_t p = text.find(op);
        if (p != std::string::npos) {
            at = p;
            a.op = op;
            break;
        }
    }
    auto trim = [](std::string s) {
        const auto b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
        return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
    };
    const std::string usage = " (expected \"<metric> <op> <number>\", op one of <= < >= > == !=, e.g. \"eval.ppl_ratio <= 1.05\")";
    if (at == std::string::npos) throw Error("recipe", where + ": assertion '" + text + "' has no comparison" + usage);
    a.metric = trim(text.substr(0, at));
    const std::string number = trim(text.substr(at + a.op.size()));
    if (a.metric.empty() || a.metric.find_first_of(" \t") != std::string::npos)
        throw Error("recipe", where + ": assertion '" + text + "' must name one metric" + usage);
    if (number == "true" || number == "false") {
        a.value = number == "true" ? 1.0 : 0.0;
        return a;
    }
    char* end = nullptr;
    errno = 0;
    a.value = std::strtod(number.c_str(), &end);
    if (number.empty() || end != number.c_str() + number.size() || errno != 0 || !std::isfinite(a.value))
        throw Error("recipe", where + ": assertion '" + text + "': '" + number + "' is not a number" + usage);
    return a;
}

Recipe parse_recipe(const fs::path& file) {
    Recipe r;
    r.file = file;
    std::error_code ec;
    if (!fs::is_regular_file(file, ec)) throw Error("recipe", "recipe '" + file.string() + "' does not exist or is not a file");
    YAML::Node root;
    try {
        root = YAML::LoadFile(file.string());
    } catch (const YAML::ParserException& e) {
        throw Error("recipe", r.where(e.mark.line + 1) + ": not valid YAML/JSON: " + e.msg);
    } catch (const YAML::Exception& e) {
        throw Error("recipe", file.string() + ": cannot read: " + e.what());
    }
    Parser p(r);
    if (!root.IsMap()) p.fail(root.IsDefined() && !root.IsNull() ? line_of(root) : 1, "a recipe is a mapping with 'model' and 'steps'");
    r.name = file.stem().string();
    bool have_model = false, have_steps = false;
    YAML::Node steps_node;
    for (const auto& kv : root) {
        const std::string key = p.scalar(kv.first, "key");
        const int kline = line_of(kv.first);
        if (key == "name") {
            r.name = p.scalar(kv.second, key);
            if (r.name.empty() || r.name.find_first_of("/\\ ") != std::string::npos || r.name == "." || r.name == "..")
                p.fail(kline, "'name' must be a plain word (it names runs/<name>/)");
        } else if (key == "model") {
            r.model = p.resolve(p.scalar(kv.second, key));
            r.model_line = line_of(kv.second);
            have_model = true;
        } else if (key == "calib") {
            r.calib = p.sources(kv.second, key);
        } else if (key == "data") {
            r.data = p.sources(kv.second, key);
        } else if (key == "corpus") {
            if (!kv.second.IsMap()) p.fail(kline, "'corpus' must be a mapping of corpus flags (seq_len, max_tokens, ...)");
            static const std::set<std::string> allowed{"seq-len", "max-tokens", "batch-tokens", "bos", "no-eos", "format"};
            for (const auto& c : kv.second) {
                StepOption o = p.option(p.scalar(c.first, "key"), c.second);
                o.line = line_of(c.first);
                if (allowed.count(o.key) == 0)
                    p.fail(o.line, "'corpus' key '" + o.key + "' is not a corpus flag (seq_len, max_tokens, batch_tokens, bos, no_eos, format)");
                r.corpus.push_back(std::move(o));
            }
        } else if (key == "steps") {
            steps_node = kv.second;
            have_steps = true;
            if (!steps_node.IsSequence() || steps_node.size() == 0) p.fail(kline, "'steps' must be a non-empty list");
        } else if (key == "assert") {
            r.asserts = p.asserts(kv.second);
        } else {
            p.fail(kline, "unknown key '" + key + "' (recipe keys: name, model, calib, data, corpus, steps, assert)");
        }
    }
    if (!have_model) p.fail(1, "missing 'model' (the checkpoint directory the pipeline starts from)");
    if (!have_steps) p.fail(1, "missing 'steps'");
    std::map<std::string, int> kind_count;
    std::set<std::string> names;
    for (const auto& node : steps_node) {
        Step s = p.step(node, kind_count, names);
        if (!names.insert(s.name).second) p.fail(s.line, "two steps are named '" + s.name + "'; give one a 'name'");
        r.steps.push_back(std::move(s));
    }
    for (const Assertion& a : r.asserts) {
        const std::string step = a.metric.substr(0, a.metric.find('.'));
        if (a.metric.find('.') == std::string::npos || names.count(step) == 0)
            p.fail(a.line, "assertion '" + a.text + "' must start with a step name (one of the steps' names) and a metric");
    }
    return r;
}

}  // namespace moekit::pipeline
