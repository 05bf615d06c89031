// `moekit inspect MODEL_DIR`: architecture, sizes and a consistency check; exit 1 when the
// checkpoint disagrees with its config.
#include <iostream>

#include "cli/commands.h"
#include "model/inspect.h"

namespace moekit::cli {

CLI::App* add_inspect(CLI::App& app, InspectCommand& command) {
    CLI::App* sub = app.add_subcommand("inspect", "Describe a checkpoint and check it against its config");
    sub->description(
        "Describe a Hugging Face MoE checkpoint and check it against its config.\n\n"
        "Reads config.json and the safetensors headers only (no weights), so it is instant even for\n"
        "very large checkpoints. Prints the architecture, which layers are MoE, experts per layer and\n"
        "per token, shared experts, dimensions, parameter counts (total and active per token), bytes by\n"
        "category and dtype, and the shard files. Every tensor is checked against the shapes the config\n"
        "implies; missing, unexpected or misshapen tensors are listed and the exit code is 1.\n\n"
        "Example:\n  moekit inspect assets/demo-moe\n  moekit inspect path/to/Mixtral-8x7B --json | jq .params_count");
    sub->add_option("MODEL_DIR", command.model_dir, "Checkpoint directory (config.json + *.safetensors)")->required();
    add_common_options(*sub, command.common);
    return sub;
}

int run_inspect(const InspectCommand& command) {
    apply_common_options(command.common);
    require_directory(command.model_dir, "MODEL_DIR");
    const model::InspectReport report = model::inspect({command.model_dir});
    if (command.common.json)
        std::cout << model::to_json(report).dump(2) << "\n";
    else
        std::cout << model::to_text(report);
    return report.ok() ? 0 : 1;
}

}  // namespace moekit::cli
