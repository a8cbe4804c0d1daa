/*
 * SDK-free part of the Ascend-310 inference program (see inc/infer_util.h).
 */
#include "infer_util.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <system_error>

namespace fs = std::filesystem;

namespace vitjob {

namespace {

const char kBinExt[] = ".bin";

bool EndsWith(const std::string &s, const std::string &suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

int ParseDeviceId(const std::string &value) {
  if (value.empty() || value.find_first_not_of("0123456789") != std::string::npos) {
    throw ArgError("--device_id must be a non-negative integer, got '" + value + "'");
  }
  long parsed = 0;
  try {
    parsed = std::stol(value);
  } catch (const std::out_of_range &) {
    throw ArgError("--device_id is out of range: '" + value + "'");
  }
  if (parsed > std::numeric_limits<int>::max()) {
    throw ArgError("--device_id is out of range: '" + value + "'");
  }
  return static_cast<int>(parsed);
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string FormatDouble(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

}  // namespace

std::string Usage(const std::string &prog) {
  return "usage: " + prog +
         " --model_path=FILE.mindir --dataset_path=DIR [--device_id=N] [--dataset=cifar10]\n"
         "       [--result_path=DIR (./result_Files)] [--time_file=FILE (./time_Result/test_perform_static.txt)]\n"
         "Runs the MINDIR on every preprocessed .bin in DIR (float32 NCHW, see `vitjob infer310 preprocess`),\n"
         "writes <name>_<i>.bin per output and the average inference time to the time file.\n";
}

Options ParseArgs(const std::vector<std::string> &args) {
  Options opts;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string &arg = args[i];
    if (arg == "--help" || arg == "-h") {
      opts.help = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) {
      throw ArgError("unexpected argument '" + arg + "': flags look like --name=value");
    }
    std::string key;
    std::string value;
    const std::size_t eq = arg.find('=');
    if (eq != std::string::npos) {
      key = arg.substr(2, eq - 2);
      value = arg.substr(eq + 1);
    } else {
      key = arg.substr(2);
      if (i + 1 >= args.size() || args[i + 1].rfind("--", 0) == 0) {
        throw ArgError("--" + key + " needs a value");
      }
      value = args[++i];
    }
    if (key == "model_path") {
      opts.model_path = value;
    } else if (key == "dataset_path") {
      opts.dataset_path = value;
    } else if (key == "result_path") {
      opts.result_path = value;
    } else if (key == "time_file") {
      opts.time_file = value;
    } else if (key == "device_id") {
      opts.device_id = ParseDeviceId(value);
    } else if (key == "dataset") {
      opts.dataset = Lower(value);
      if (opts.dataset != "cifar10") {
        throw ArgError("--dataset " + value + " is not supported: inputs must be preprocessed cifar10 .bin files");
      }
    } else {
      throw ArgError("unknown flag --" + key);
    }
    if (value.empty() && key != "dataset") {
      throw ArgError("--" + key + " must not be empty");
    }
  }
  if (!opts.help) {
    if (opts.model_path.empty()) throw ArgError("--model_path is required (the exported .mindir file)");
    if (opts.dataset_path.empty()) throw ArgError("--dataset_path is required (directory of preprocessed .bin files)");
  }
  return opts;
}

Options ParseArgs(int argc, const char *const argv[]) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return ParseArgs(args);
}

std::vector<std::string> ListBinFiles(const std::string &dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) throw IoError("input directory " + dir + " does not exist");
  if (!fs::is_directory(dir, ec)) throw IoError("input path " + dir + " is not a directory");
  std::vector<std::string> files;
  fs::directory_iterator it(dir, ec);
  if (ec) throw IoError("cannot list " + dir + ": " + ec.message());
  for (const auto &entry : it) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file(ec) && EndsWith(name, kBinExt)) files.push_back(entry.path().string());
  }
  if (files.empty()) throw IoError("no .bin files in " + dir + " (run `vitjob infer310 preprocess` first)");
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<std::uint8_t> ReadFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw IoError("cannot open " + path + ": " + std::strerror(errno));
  const std::streamsize size = in.tellg();
  if (size < 0) throw IoError("cannot read " + path);
  if (size == 0) throw IoError(path + " is empty");
  std::vector<std::uint8_t> data(static_cast<std::size_t>(size));
  in.seekg(0);
  if (!in.read(reinterpret_cast<char *>(data.data()), size)) throw IoError("cannot read " + path);
  return data;
}

void WriteFile(const std::string &path, const void *data, std::size_t size) {
  const fs::path parent = fs::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) {
    fs::create_directories(parent, ec);
    if (ec) throw IoError("cannot create directory " + parent.string() + ": " + ec.message());
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw IoError("cannot write " + path + ": " + std::strerror(errno));
  out.write(static_cast<const char *>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) throw IoError("cannot write " + path);
}

std::string ResultPath(const std::string &result_dir, const std::string &input_path, std::size_t index) {
  std::string base = fs::path(input_path).filename().string();
  if (EndsWith(base, kBinExt)) base.resize(base.size() - std::strlen(kBinExt));
  return (fs::path(result_dir) / (base + "_" + std::to_string(index) + kBinExt)).string();
}

void TimingStats::Add(double ms) {
  if (count_ == 0) {
    min_ms_ = max_ms_ = ms;
  } else {
    min_ms_ = std::min(min_ms_, ms);
    max_ms_ = std::max(max_ms_, ms);
  }
  ++count_;
  total_ms_ += ms;
}

double TimingStats::MeanMs() const { return count_ == 0 ? 0.0 : total_ms_ / static_cast<double>(count_); }

std::string TimingLine(const TimingStats &stats) {
  std::ostringstream line;
  line << "NN inference cost average time: " << stats.MeanMs() << " ms of infer_count " << stats.Count();
  return line.str();
}

void WriteTimingFile(const std::string &path, const TimingStats &stats) {
  const std::string text = TimingLine(stats) + "\n";
  WriteFile(path, text.data(), text.size());
}

TimingStats RunAll(const std::string &input_dir, const std::string &result_dir, std::size_t expected_input_bytes,
                   const Predictor &predict) {
  TimingStats stats;
  for (const std::string &file : ListBinFiles(input_dir)) {
    const std::vector<std::uint8_t> input = ReadFile(file);
    if (expected_input_bytes != 0 && input.size() != expected_input_bytes) {
      throw IoError(file + " has " + std::to_string(input.size()) + " bytes but the model input takes " +
                    std::to_string(expected_input_bytes) +
                    " (float32 NCHW); preprocess with the model's image size");
    }
    std::vector<std::vector<std::uint8_t>> outputs;
    const auto start = std::chrono::steady_clock::now();
    try {
      outputs = predict(input);
    } catch (const std::exception &exc) {
      throw InferError("inference failed on " + file + ": " + exc.what());
    }
    const auto end = std::chrono::steady_clock::now();
    if (outputs.empty()) throw InferError("inference on " + file + " returned no output");
    stats.Add(std::chrono::duration<double, std::milli>(end - start).count());
    for (std::size_t i = 0; i < outputs.size(); ++i) {
      WriteFile(ResultPath(result_dir, file, i), outputs[i].data(), outputs[i].size());
    }
  }
  return stats;
}

std::uint64_t Fnv1a64(const std::vector<std::uint8_t> &data) {
  std::uint64_t hash = 14695981039346656037ULL;
  for (std::uint8_t byte : data) {
    hash ^= byte;
    hash *= 1099511628211ULL;
  }
  return hash;
}

BinSummary Summarize(const std::string &path, const std::string &dtype) {
  if (dtype != "float32" && dtype != "int32") throw ArgError("dtype must be float32 or int32, got " + dtype);
  const std::vector<std::uint8_t> data = ReadFile(path);
  if (data.size() % 4 != 0) {
    throw IoError(path + " has " + std::to_string(data.size()) + " bytes, not a whole number of 4-byte " + dtype +
                  " values");
  }
  BinSummary s;
  s.name = fs::path(path).filename().string();
  s.bytes = data.size();
  s.elements = data.size() / 4;
  s.fnv1a64 = Fnv1a64(data);
  for (std::size_t i = 0; i < s.elements; ++i) {
    double v = 0.0;
    if (dtype == "float32") {
      float f = 0.0f;
      std::memcpy(&f, data.data() + 4 * i, sizeof(f));
      v = static_cast<double>(f);
    } else {
      std::int32_t n = 0;
      std::memcpy(&n, data.data() + 4 * i, sizeof(n));
      v = static_cast<double>(n);
    }
    if (i == 0) {
      s.min = s.max = s.first = v;
    } else {
      s.min = std::min(s.min, v);
      s.max = std::max(s.max, v);
    }
    s.sum += v;
  }
  return s;
}

std::string FormatSummary(const BinSummary &s) {
  char hash[17];
  std::snprintf(hash, sizeof(hash), "%016llx", static_cast<unsigned long long>(s.fnv1a64));
  return s.name + " bytes=" + std::to_string(s.bytes) + " elements=" + std::to_string(s.elements) +
         " fnv1a64=" + hash + " sum=" + FormatDouble(s.sum) + " min=" + FormatDouble(s.min) +
         " max=" + FormatDouble(s.max) + " first=" + FormatDouble(s.first);
}

}  // namespace vitjob
