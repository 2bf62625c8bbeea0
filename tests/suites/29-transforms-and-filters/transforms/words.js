// A transform module: the default export, or a named one with `:name`.
module.exports = (output, context) => ({ city: context.vars.city, words: output.split(' ') });

module.exports.asObject = (output) => JSON.stringify({ words: output.split(' ') });
