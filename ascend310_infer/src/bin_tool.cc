/*
 * bin_tool: reads `.bin` files with the same library code as the inference program and prints
 * one summary line per file, so tests on the Python side can check that both languages agree
 * on the `.bin` layout.
 *
 *   bin_tool summary --dtype float32|int32 DIR   every .bin in DIR (sorted)
 *   bin_tool result-name RESULT_DIR INPUT INDEX  the result file name for an input
 *   bin_tool timing-line MS...                   the timing line for these per-sample times
 *   bin_tool parse-args ARG...                   main's options parsed from ARG... (one key=value a line)
 */
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "infer_util.h"

namespace {

int UsageError(const std::string &msg) {
  std::fprintf(stderr,
               "bin_tool: error: %s\n"
               "usage: bin_tool summary --dtype float32|int32 DIR\n"
               "       bin_tool result-name RESULT_DIR INPUT INDEX\n"
               "       bin_tool timing-line MS...\n"
               "       bin_tool parse-args ARG...\n",
               msg.c_str());
  return 2;
}

}  // namespace

int main(int argc, char **argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  try {
    if (cmd == "summary") {
      if (argc != 5 || std::string(argv[2]) != "--dtype") return UsageError("summary takes --dtype DTYPE DIR");
      for (const std::string &file : vitjob::ListBinFiles(argv[4])) {
        std::printf("%s\n", vitjob::FormatSummary(vitjob::Summarize(file, argv[3])).c_str());
      }
      return 0;
    }
    if (cmd == "result-name") {
      if (argc != 5) return UsageError("result-name takes RESULT_DIR INPUT INDEX");
      std::printf("%s\n", vitjob::ResultPath(argv[2], argv[3], std::stoul(argv[4])).c_str());
      return 0;
    }
    if (cmd == "timing-line") {
      vitjob::TimingStats stats;
      for (int i = 2; i < argc; ++i) stats.Add(std::stod(argv[i]));
      std::printf("%s\n", vitjob::TimingLine(stats).c_str());
      return 0;
    }
    if (cmd == "parse-args") {
      const vitjob::Options o = vitjob::ParseArgs(std::vector<std::string>(argv + 2, argv + argc));
      std::printf("model_path=%s\ndataset_path=%s\ndataset=%s\nresult_path=%s\ntime_file=%s\ndevice_id=%d\n",
                  o.model_path.c_str(), o.dataset_path.c_str(), o.dataset.c_str(), o.result_path.c_str(),
                  o.time_file.c_str(), o.device_id);
      return 0;
    }
    return UsageError(cmd.empty() ? "missing command" : "unknown command " + cmd);
  } catch (const vitjob::ArgError &exc) {
    return UsageError(exc.what());
  } catch (const std::exception &exc) {
    std::fprintf(stderr, "bin_tool: error: %s\n", exc.what());
    return 1;
  }
}
