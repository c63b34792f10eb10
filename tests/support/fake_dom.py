"""A fake DOM for the UI's view code under CPython, built from the real index.html.

`FakeDom` implements the `DomAdapter` of ringboard_ui.view and the `PairingDom` of
ringboard_ui.pairing over `FakeNode`s; an input's value is its `value` attribute.
"""

from __future__ import annotations

from html.parser import HTMLParser


class FakeNode:
    """An element with attributes, text and children; text replaces children as in the DOM."""

    def __init__(self, tag: str, attributes: dict[str, str] | None = None) -> None:
        self.tag = tag
        self.attributes = dict(attributes or {})
        self.children: list[FakeNode | str] = []
        self.parent: FakeNode | None = None

    @property
    def text(self) -> str:
        parts = []
        for child in self.children:
            parts.append(child if isinstance(child, str) else child.text)
        return "".join(parts)

    def iter(self) -> list[FakeNode]:
        nodes = [self]
        for child in self.children:
            if isinstance(child, FakeNode):
                nodes.extend(child.iter())
        return nodes

    def find_class(self, css_class: str) -> list[FakeNode]:
        return [node for node in self.iter() if css_class in node.attributes.get("class", "").split()]

    def one(self, css_class: str) -> FakeNode:
        found = self.find_class(css_class)
        assert len(found) == 1, f"expected one .{css_class}, found {len(found)}"
        return found[0]

    def element_children(self) -> list[FakeNode]:
        return [child for child in self.children if isinstance(child, FakeNode)]


class ShellParser(HTMLParser):
    """Builds FakeNodes from index.html."""

    VOID = {"meta", "link", "br", "img", "input", "hr"}

    def __init__(self) -> None:
        super().__init__()
        self.root = FakeNode("#document")
        self._stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = FakeNode(tag, {name: value or "" for name, value in attrs})
        node.parent = self._stack[-1]
        self._stack[-1].children.append(node)
        if tag not in self.VOID:
            self._stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        while self._stack[-1].tag != tag:
            self._stack.pop()
        self._stack.pop()

    def handle_data(self, data: str) -> None:
        if data.strip():
            self._stack[-1].children.append(data.strip())


class FakeDom:
    """`view.DomAdapter` over FakeNodes, counting created elements."""

    def __init__(self, html: str) -> None:
        parser = ShellParser()
        parser.feed(html)
        self.root = parser.root
        self.title = ""
        self.created = 0
        self.focused: FakeNode | None = None

    def element_by_id(self, element_id: str) -> FakeNode:
        for node in self.root.iter():
            if node.attributes.get("id") == element_id:
                return node
        raise LookupError(element_id)

    def document_element(self) -> FakeNode:
        return next(node for node in self.root.iter() if node.tag == "html")

    def elements_with_attribute(self, name: str) -> list[FakeNode]:
        return [node for node in self.root.iter() if name in node.attributes]

    def create_element(self, tag: str) -> FakeNode:
        self.created += 1
        return FakeNode(tag)

    def get_attribute(self, node: FakeNode, name: str) -> str | None:
        return node.attributes.get(name)

    def set_attribute(self, node: FakeNode, name: str, value: str) -> None:
        assert isinstance(value, str), f"attribute {name} set to {value!r}"
        node.attributes[name] = value

    def remove_attribute(self, node: FakeNode, name: str) -> None:
        node.attributes.pop(name, None)

    def set_text(self, node: FakeNode, text: str) -> None:
        assert isinstance(text, str), f"text set to {text!r}"
        node.children = [text] if text else []

    def append(self, parent: FakeNode, child: FakeNode) -> None:
        self._detach(child)
        child.parent = parent
        parent.children.append(child)

    def replace_children(self, parent: FakeNode, children: list[FakeNode]) -> None:
        for child in parent.element_children():
            child.parent = None
        parent.children = []
        for child in children:
            self.append(parent, child)

    def set_title(self, text: str) -> None:
        self.title = text

    @staticmethod
    def _detach(node: FakeNode) -> None:
        if node.parent is not None:
            node.parent.children = [child for child in node.parent.children if child is not node]

    def get_value(self, node: FakeNode) -> str:
        return node.attributes.get("value", "")

    def set_value(self, node: FakeNode, value: str) -> None:
        assert isinstance(value, str), f"value set to {value!r}"
        node.attributes["value"] = value

    def focus(self, node: FakeNode) -> None:
        self.focused = node
