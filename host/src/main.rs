//! `facelock`: the workstation command line. Parses arguments and dispatches to `cmd::*`.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// Offline face unlock: train, evaluate, export and talk to the board.
#[derive(Parser)]
#[command(name = "facelock", version, about)]
struct Cli {
    /// More log detail (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Benchmarks that print numbers (loss, align, infer, device).
    #[command(subcommand)]
    Bench(cmd::bench::Bench),
    /// Inspect face data sets.
    #[command(subcommand)]
    Data(cmd::data::Data),
    /// Write aligned 112x112 PNGs of a data set (and a montage to check alignment by eye).
    Align(cmd::align::AlignArgs),
    /// Talk to a board over its serial port: hello, auth, enroll, verify, list, delete, stats.
    Device(cmd::device::DeviceArgs),
    /// The whole journey on a virtual board: enroll LFW people over serial, unlock, lockout.
    Demo(cmd::demo::DemoArgs),
    /// Train the backbone with AM-Softmax (or a softmax baseline); checkpoints every epoch.
    Train(cmd::train::TrainArgs),
    /// Verification accuracy, TAR@FAR, EER, AUC and ROC of a checkpoint on a pairs file.
    Eval(cmd::eval::EvalArgs),
    /// Embeddings of a list of images to a .npy file.
    Embed(cmd::embed::EmbedArgs),
    /// Describe backbone configurations (layers, parameters, FLOPs).
    #[command(subcommand)]
    Model(cmd::model::Model),
    /// Five-point landmarks from a face detector's box: train the cascade, evaluate it.
    #[command(subcommand)]
    Landmarks(cmd::landmarks::LandmarksCmd),
    /// Trained checkpoint → ONNX f32 (BN folded, facelock metadata), checked against candle.
    Export(cmd::export::Args),
    /// f32 ONNX → int8 QDQ ONNX, calibrated on aligned faces.
    Quantize(cmd::quantize::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cmd::init_logging(cli.verbose);

    let result = match cli.command {
        Command::Bench(bench) => bench.run(),
        Command::Data(data) => data.run(),
        Command::Align(args) => args.run(),
        Command::Device(args) => args.run(),
        Command::Demo(args) => args.run(),
        Command::Model(model) => model.run(),
        Command::Train(args) => args.run(),
        Command::Eval(args) => args.run(),
        Command::Embed(args) => args.run(),
        Command::Landmarks(cmd) => cmd.run(),
        Command::Export(args) => cmd::export::run(args),
        Command::Quantize(args) => cmd::quantize::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
