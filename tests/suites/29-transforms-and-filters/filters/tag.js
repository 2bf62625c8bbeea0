module.exports = function (value, name) {
  return `<${name}>${value}</${name}>`;
};
