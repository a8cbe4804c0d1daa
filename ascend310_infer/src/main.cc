/*
 * Ascend-310 inference of an exported ViT MINDIR with MindSpore's C++ inference API
 * (MindSpore Lite cloud-side inference, `include/api/*.h` + libmindspore-lite.so).
 *
 * Reads every preprocessed `.bin` (float32 NCHW, written by `vitjob infer310 preprocess`) in
 * --dataset_path, writes `<name>_<i>.bin` per output into --result_path and
 * `NN inference cost average time: X ms of infer_count N` into --time_file.
 * Everything but the SDK calls lives in infer_util (unit-tested without the SDK).
 */
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "include/api/context.h"
#include "include/api/model.h"
#include "include/api/status.h"
#include "include/api/types.h"
#include "infer_util.h"

namespace {

std::string ShapeString(const std::vector<int64_t> &shape) {
  std::string out = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? "," : "") + std::to_string(shape[i]);
  return out + ")";
}

int Run(const vitjob::Options &opts) {
  if (!std::filesystem::is_regular_file(opts.model_path)) {
    throw vitjob::IoError("model file " + opts.model_path + " does not exist (export one with `vitjob export`)");
  }
  auto context = std::make_shared<mindspore::Context>();
  auto ascend = std::make_shared<mindspore::AscendDeviceInfo>();
  ascend->SetDeviceID(static_cast<uint32_t>(opts.device_id));
  context->MutableDeviceInfo().push_back(ascend);

  mindspore::Model model;
  const mindspore::Status built = model.Build(opts.model_path, mindspore::kMindIR, context);
  if (built != mindspore::kSuccess) {
    throw vitjob::InferError("cannot build " + opts.model_path + " on Ascend device " +
                             std::to_string(opts.device_id) + ": " + built.ToString());
  }
  std::vector<mindspore::MSTensor> inputs = model.GetInputs();
  if (inputs.size() != 1) {
    throw vitjob::InferError("the model has " + std::to_string(inputs.size()) + " inputs; expected one image tensor");
  }
  std::fprintf(stderr, "main: model %s input %s shape %s (%zu bytes)\n", opts.model_path.c_str(),
               inputs[0].Name().c_str(), ShapeString(inputs[0].Shape()).c_str(), inputs[0].DataSize());

  const vitjob::Predictor predict = [&model, &inputs](const std::vector<std::uint8_t> &data) {
    std::memcpy(inputs[0].MutableData(), data.data(), data.size());
    std::vector<mindspore::MSTensor> outputs;
    const mindspore::Status status = model.Predict(inputs, &outputs);
    if (status != mindspore::kSuccess) throw vitjob::InferError("Predict failed: " + status.ToString());
    std::vector<std::vector<std::uint8_t>> result;
    for (const mindspore::MSTensor &out : outputs) {
      const std::shared_ptr<const void> data = out.Data();
      if (data == nullptr) throw vitjob::InferError("output " + out.Name() + " has no host data");
      const auto *bytes = static_cast<const std::uint8_t *>(data.get());
      result.emplace_back(bytes, bytes + out.DataSize());
    }
    return result;
  };
  const vitjob::TimingStats stats = vitjob::RunAll(opts.dataset_path, opts.result_path, inputs[0].DataSize(), predict);
  vitjob::WriteTimingFile(opts.time_file, stats);
  std::printf("%s\n", vitjob::TimingLine(stats).c_str());
  return 0;
}

}  // namespace

int main(int argc, char **argv) {
  vitjob::Options opts;
  try {
    opts = vitjob::ParseArgs(argc, argv);
  } catch (const vitjob::ArgError &exc) {
    std::fprintf(stderr, "main: error: %s\n%s", exc.what(), vitjob::Usage(argv[0]).c_str());
    return 2;
  }
  if (opts.help) {
    std::printf("%s", vitjob::Usage(argv[0]).c_str());
    return 0;
  }
  try {
    return Run(opts);
  } catch (const std::exception &exc) {
    std::fprintf(stderr, "main: error: %s\n", exc.what());
    return 1;
  }
}
