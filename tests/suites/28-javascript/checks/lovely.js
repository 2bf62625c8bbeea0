// promptfoo's file form: a CommonJS module exporting (output, context) => result.
module.exports = (output, context) => output.endsWith('lovely');

module.exports.mentionsCity = (output, context) => {
  const found = output.includes(context.vars.city);
  return { pass: found, score: found ? 1 : 0, reason: `mentions ${context.vars.city}: ${found}` };
};
