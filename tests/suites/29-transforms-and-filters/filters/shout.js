// A Nunjucks filter as promptfoo loads it: module.exports is the function.
module.exports = (value) => String(value).toUpperCase();
