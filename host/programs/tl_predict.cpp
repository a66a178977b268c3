// tl_predict: classifies photos with a trained head, using the preprocessing recorded in the model.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "host/core/cli.h"
#include "host/core/common.h"
#include "host/core/log.h"
#include "host/io/image.h"
#include "host/io/plot.h"
#include "host/stages/predict.h"
#include "host/core/threads.h"

using namespace tl;

namespace {

// A CSV field as RFC 4180 quotes it: in double quotes, each quote inside doubled (commas, CR and LF
// then need nothing more); Python's csv module reads back the same text.
std::string csv_field(const std::string& v) {
  std::string s = "\"";
  for (char c : v) s += c == '"' ? std::string("\"\"") : std::string(1, c);
  return s + "\"";
}

// A file name for an input's explanation: its path with separators and odd characters as '_', the
// extension dropped, ".png"; "-2", "-3", ... when two inputs would share one.
std::string explained_name(const std::string& name, std::map<std::string, int>& seen) {
  std::string base = name;
  const size_t dot = base.find_last_of('.'), slash = base.find_last_of('/');
  if (dot != std::string::npos && (slash == std::string::npos || dot > slash)) base.resize(dot);
  while (!base.empty() && (base[0] == '/' || base[0] == '.')) base.erase(0, 1);
  for (char& c : base)
    if (!(isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_')) c = '_';
  if (base.empty()) base = "image";
  const int k = ++seen[base];
  return k == 1 ? base + ".png" : strfmt("%s-%d.png", base.c_str(), k);
}

void write_explained(Predictor& pred, const std::vector<PredictInput>& inputs, const std::vector<Prediction>& res,
                     const std::string& dir, const std::string& layer, bool progress) {
  make_dirs(dir);
  std::vector<size_t> which;
  for (size_t i = 0; i < res.size(); i++)
    if (res[i].ok) which.push_back(i);
  std::vector<Explained> ex = pred.explain(inputs, which, layer, progress && which.size() > 1);
  const auto& cls = pred.classes();
  std::map<std::string, int> seen;
  int written = 0;
  for (size_t k = 0; k < which.size(); k++) {
    const Prediction& r = res[which[k]];
    if (!ex[k].ok) {
      alert("%s: not explained: %s", r.name.c_str(), ex[k].error.c_str());
      continue;
    }
    const int y = label_from_path(r.name, cls), guess = r.p > 0.5 ? 1 : 0;
    const std::string line1 = strfmt("p(%s) %.3f: %s", cls[1].c_str(), r.p, cls[guess].c_str());
    const std::string line2 = y >= 0 ? strfmt("label %s: %s", cls[y].c_str(), y == guess ? "right" : "WRONG")
                                     : std::string("no label in the path");
    draw_explained(path_join(dir, explained_name(r.name, seen)), ex[k].overlay, line1, line2,
                   strfmt("%s  (Grad-CAM at %s)", r.name.c_str(), layer.c_str()), y >= 0 ? (y == guess) : -1);
    written++;
  }
  note("wrote %d explained photos to %s (Grad-CAM at %s)", written, dir.c_str(), layer.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  return guarded_main("tl_predict", [&] {
    std::vector<std::string> paths;
    std::string model, weights, device = "auto", precision, csv, kaggle, report, sheet, export_onnx, explain_dir;
    std::string explain_layer = "block5_conv3";
    double clip = 0;
    int batch = 16, threads = 0;
    bool tta = false, quiet = false;
    Cli cli("tl_predict", "tl_predict [--model FILE] [--weights FILE] [--csv FILE] [--kaggle FILE] PATH...",
            "Prints path<TAB>p_dog<TAB>label for every image in PATH (files, folders, zip archives), batched. The\n"
            "image size, resize mode and preprocessing are the ones recorded in the model (those of its cache);\n"
            "the weights must be the ones its features were made with (checked by checksum). A file that cannot\n"
            "be read gets a line saying why (p_dog '-'), and the rest still run; the exit status is then 1.");
    cli.positional(&paths, "PATH...", "images, folders of images, or .zip archives");
    cli.opt("--model", &model, "FILE", "trained head (default: model/best.bin, else model/model.bin)");
    cli.opt("--weights", &weights, "FILE", "converted VGG weights (default: the file the model's cache used)");
    cli.opt("--device", &device, "D", "auto, cpu or cuda");
    cli.opt("--precision", &precision, "P",
            "the conv base's arithmetic (fp32, tf32, bf16); default and only choice: the one the model's features "
            "were made with (recorded in the model)");
    cli.opt("--batch", &batch, "N", "images per forward pass");
    cli.opt("--threads", &threads, "N", "CPU threads (0: all cores; results are identical for any count)");
    cli.opt("--csv", &csv, "FILE", "also write the table as CSV (path,p_dog,label,error)");
    cli.opt("--kaggle", &kaggle, "FILE",
            "write a Kaggle submission: id,label with label = probability of dog, ids from N.jpg names, sorted");
    cli.opt("--clip", &clip, "F", "clip the submission's probabilities to [F, 1-F] (e.g. 0.005; default 0: none)");
    cli.opt("--report", &report, "FILE",
            "write the accuracy, log loss and confusion matrix of the images whose paths carry a label (class folders "
            "or Kaggle names), as printed on stderr");
    cli.opt("--sheet", &sheet, "FILE.png",
            "draw the predictions as a sheet of photos, each with its Grad-CAM heatmap (--explain-layer): the most "
            "confident mistakes when the paths carry labels, else the most confident predictions (up to 16)");
    cli.opt("--explain", &explain_dir, "DIR",
            "write DIR/NAME.png for every photo: the photo as the model saw it with a Grad-CAM heatmap over it (where "
            "the predicted class's score comes from), p(dog), and the label when the path carries one");
    cli.opt("--explain-layer", &explain_layer, "LAYER",
            "the conv layer whose maps --explain and --sheet show (Keras names: block5_conv3, block4_conv3, ...)");
    cli.flag("--tta", &tta, "test-time augmentation: average over the image and its horizontal flip");
    cli.opt("--export-onnx", &export_onnx, "FILE",
            "write the whole classifier (VGG base with the input convention, and the head) as one ONNX model: "
            "input 'pixels' uint8 [N, S, S, 3] RGB resized as the model's recipe says, output 'p_dog' [N, 1]");
    cli.flag("--quiet", &quiet, "no progress or summary on stderr");
    if (!cli.parse(argc, argv)) return 0;
    if (paths.empty() && export_onnx.empty()) fail("no images given; see tl_predict --help");
    if (!(clip >= 0 && clip < 0.5)) fail("--clip must be in [0, 0.5), got %g", clip);
    if (threads > 0) set_num_threads(threads);
    if (model.empty()) model = file_exists("model/best.bin") ? "model/best.bin" : "model/model.bin";
    set_quiet(quiet);
    const Device d = resolve_device(device);
    Predictor pred(model, weights, d, batch, tta, precision);
    note("%s", pred.describe().c_str());
    if (!export_onnx.empty()) {
      const std::vector<uint8_t> b = pred.onnx();
      write_file_atomic(export_onnx, b.data(), b.size());
      note("wrote %s (%s): input 'pixels' uint8 [N, %d, %d, 3] RGB, output 'p_dog' [N, 1]", export_onnx.c_str(),
           human_bytes((double)b.size()).c_str(), pred.image_size(), pred.image_size());
      if (paths.empty()) return 0;
    }
    if (!explain_dir.empty() || !sheet.empty()) pred.explain({}, {}, explain_layer);  // a bad layer name fails here
    std::vector<PredictInput> inputs = expand_inputs(paths);
    std::vector<Prediction> res = pred.run(inputs, !quiet && inputs.size() > (size_t)batch);
    const auto& cls = pred.classes();
    std::string csv_text = "path,p_" + cls[1] + ",label,error\n";
    int bad = 0;
    for (const Prediction& r : res) {
      if (r.ok) {
        printf("%s\t%.6f\t%s\n", r.name.c_str(), r.p, cls[r.p > 0.5 ? 1 : 0].c_str());
        csv_text += strfmt("%s,%.17g,%s,\n", csv_field(r.name).c_str(), r.p, cls[r.p > 0.5 ? 1 : 0].c_str());
      } else {
        printf("%s\t-\terror: %s\n", r.name.c_str(), r.error.c_str());
        csv_text += strfmt("%s,,,%s\n", csv_field(r.name).c_str(), csv_field(r.error).c_str());
        bad++;
      }
    }
    fflush(stdout);
    if (!csv.empty()) write_file_atomic(csv, csv_text.data(), csv_text.size());
    if (!kaggle.empty()) {
      // Every id gets a row: Kaggle rejects a submission with one missing. An image that could not be
      // read gets 0.5 (no information), said loudly, and the exit status stays 1.
      std::map<long, double> rows;
      int no_id = 0, guessed = 0;
      size_t ids = 0;
      for (const Prediction& r : res) {
        const long id = kaggle_id(r.name);
        if (id < 0) {
          if (no_id++ < 3) alert("%s: not named N.jpg: left out of the submission", r.name.c_str());
          continue;
        }
        ids++;
        if (rows.count(id)) fail("--kaggle: id %ld appears twice (%s)", id, r.name.c_str());
        if (!r.ok) {
          alert("%s could not be read (%s): its submission row says 0.5", r.name.c_str(), r.error.c_str());
          guessed++;
        }
        rows[id] = r.ok ? std::min(std::max(r.p, clip), 1.0 - clip) : 0.5;
      }
      if (rows.size() != ids) fail("--kaggle: %zu rows for %zu ids; nothing written", rows.size(), ids);
      std::string s = "id,label\n";
      for (auto& [id, p] : rows) s += strfmt("%ld,%.17g\n", id, p);
      write_file_atomic(kaggle, s.data(), s.size());
      note("wrote %s (%zu rows, one per id%s)", kaggle.c_str(), rows.size(),
           guessed ? strfmt("; %d of them 0.5 for unreadable images", guessed).c_str() : "");
    }
    note("%zu images, %d could not be read", res.size(), bad);
    int labelled = 0;
    const std::string rep = labelled_report(res, cls, clip, &labelled);
    if (!rep.empty()) say("\n%s", rep.c_str());
    if (!explain_dir.empty()) write_explained(pred, inputs, res, explain_dir, explain_layer, !quiet);
    if (!sheet.empty()) {
      std::vector<size_t> pick;
      for (size_t i = 0; i < res.size(); i++) {
        if (!res[i].ok) continue;
        const int y = label_from_path(res[i].name, cls);
        if (labelled == 0 || (y >= 0 && (res[i].p > 0.5) != (y == 1))) pick.push_back(i);
      }
      std::stable_sort(pick.begin(), pick.end(),
                       [&](size_t a, size_t b) { return std::fabs(res[a].p - 0.5) > std::fabs(res[b].p - 0.5); });
      if (pick.size() > 16) pick.resize(16);
      std::vector<SheetItem> items;
      std::vector<Explained> ex = pred.explain(inputs, pick, explain_layer);
      for (size_t k = 0; k < pick.size(); k++) {
        const size_t i = pick[k];
        SheetItem it;
        if (ex[k].ok) it.img = std::move(ex[k].overlay);
        const int y = label_from_path(res[i].name, cls);
        it.line1 = y >= 0 ? strfmt("%s  p(%s) %.3f", cls[y].c_str(), cls[1].c_str(), res[i].p)
                          : strfmt("p(%s) %.3f: %s", cls[1].c_str(), res[i].p, cls[res[i].p > 0.5].c_str());
        it.line2 = res[i].name;
        it.wrong = y >= 0;
        items.push_back(std::move(it));
      }
      draw_sheet(sheet, labelled ? strfmt("the %zu most confident mistakes (label from the path; Grad-CAM at %s)", items.size(), explain_layer.c_str())
                                 : strfmt("the %zu most confident predictions (Grad-CAM at %s)", items.size(), explain_layer.c_str()),
                 items);
      note("wrote %s (%zu photos)", sheet.c_str(), items.size());
    }
    if (!report.empty()) {
      if (rep.empty()) fail("--report: none of the images carries a label in its path (class folders or cat.N.jpg names)");
      write_file_atomic(report, rep.data(), rep.size());
    }
    return bad ? 1 : 0;
  });
}
