//! Components built to be slow to compile, for the upload tests and the
//! `upload` bench.

/// A component whose one core function declares `locals` i64 locals and
/// keeps them all live across a loop that reads and writes each of them:
/// the shape that makes Cranelift slow (quadratic in the locals; see the
/// `upload` bench). It exports nothing, so it is never a valid plugin.
pub fn compile_bomb(locals: u32) -> Vec<u8> {
    compile_bombs(locals, 1)
}

/// [`compile_bomb`] with `functions` such functions.
pub fn compile_bombs(locals: u32, functions: u32) -> Vec<u8> {
    use wasm_encoder::{CodeSection, Function, FunctionSection, Instruction, Module, TypeSection, ValType};
    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I64]);
    let mut declared = FunctionSection::new();
    for _ in 0..functions {
        declared.function(0);
    }
    let mut body = Function::new([(locals, ValType::I64)]);
    for i in 0..locals {
        body.instruction(&Instruction::I64Const(i64::from(i)));
        body.instruction(&Instruction::LocalSet(i));
    }
    // A loop that reads and writes every local: all of them stay live
    // across its back edge.
    body.instruction(&Instruction::Loop(wasm_encoder::BlockType::Empty));
    for i in 1..locals {
        body.instruction(&Instruction::LocalGet(i));
        body.instruction(&Instruction::LocalGet(i - 1));
        body.instruction(&Instruction::I64Add);
        body.instruction(&Instruction::LocalSet(i));
    }
    body.instruction(&Instruction::LocalGet(0));
    body.instruction(&Instruction::I64Eqz);
    body.instruction(&Instruction::BrIf(0));
    body.instruction(&Instruction::End);
    body.instruction(&Instruction::I64Const(0));
    for i in 0..locals {
        body.instruction(&Instruction::LocalGet(i));
        body.instruction(&Instruction::I64Add);
    }
    body.instruction(&Instruction::End);
    let mut code = CodeSection::new();
    for _ in 0..functions {
        code.function(&body);
    }
    let mut module = Module::new();
    module.section(&types).section(&declared).section(&code);
    let mut component = wasm_encoder::Component::new();
    component.section(&wasm_encoder::ModuleSection(&module));
    component.finish()
}
